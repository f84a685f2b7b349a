#!/usr/bin/env python3
"""localai's one entry point: fetch pinned sources, build the native engines, run or test.

    python3 build.py [FLAGS]                 build everything (native libraries, cffi bindings, .venv)
    python3 build.py [FLAGS] run [ARGS]      build if needed, install the default models, start the server
                                             (ARGS go to `localai run`, e.g. --address 0.0.0.0:8080)
    python3 build.py [FLAGS] test [ARGS]     build if needed, install the default models, run pytest
                                             (ARGS go to pytest, e.g. -k chat -x)
    python3 build.py [FLAGS] bench [ARGS]    also build the upstream tools (llama-server, whisper-cli)
                                             and run the side-by-side benchmarks in tests/bench
    python3 build.py [FLAGS] image           build the container image (Containerfile) with podman or
                                             docker; --tag NAME, --base IMAGE, and the CPU/SD flags

Flags (before the subcommand):
    --stablediffusion      build the image backend (also BUILD_TAGS / GO_TAGS containing "stablediffusion")
    --native/--no-native   tune for this CPU (default) or build portably
    --cpu-features LIST    with --no-native: comma list of AVX,AVX2,AVX512,FMA,F16C
    --blas                 use OpenBLAS for prompt processing (apt: libopenblas-dev)
    --no-rpc               leave out ggml's RPC backend (`localai worker`, models split over workers)
    --jobs N               parallel compile jobs (default: CMAKE_BUILD_PARALLEL_LEVEL or the CPU count)
    --debug                debug build of the native code
    --clean                remove the build folder and compiled bindings first

Environment: CMAKE_ARGS (extra cmake -D options), CMAKE_BUILD_PARALLEL_LEVEL, LOCALAI_CACHE (download
cache, default ~/.cache/localai), BUILD_TAGS / GO_TAGS, LOCALAI_EXTRAS (the package extras .venv gets;
default "test"), CONTAINER_ENGINE (podman or docker, for `image`).

The first build creates .venv (ignored) with the package installed editable, so `.venv/bin/localai` exists
afterwards. Compiler output goes to build/build.log; an unchanged rebuild is a no-op.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BUILD = ROOT / "build"
NATIVE_OUT = ROOT / "localai" / "_native"
CPU_FEATURES = ("AVX", "AVX2", "AVX512", "FMA", "F16C")
APT_HINT = "apt-get update && apt-get install -y build-essential cmake python3-dev python3-venv"


class BuildError(RuntimeError):
    """A build step failed; the message says what to do next."""


# ---- options -------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stablediffusion", action="store_true", default=None)
    parser.add_argument("--native", dest="native", action="store_true", default=True)
    parser.add_argument("--no-native", dest="native", action="store_false")
    parser.add_argument("--cpu-features", default="", help="comma list: " + ",".join(CPU_FEATURES))
    parser.add_argument("--blas", action="store_true")
    parser.add_argument("--no-rpc", dest="rpc", action="store_false", default=True)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--clean", action="store_true")
    parser.add_argument("--tag", default="localhost/localai:latest", help="image: the tag to build")
    parser.add_argument("--base", default=None, help="image: the base image (default debian:bookworm-slim)")
    parser.add_argument("command", nargs="?", choices=("build", "run", "test", "bench", "image"), default="build")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "image" and args.rest:  # `build.py image --tag X --stablediffusion`: flags after it too
        args = parser.parse_args([*argv[:len(argv) - len(args.rest) - 1], *args.rest, "image"])
    if args.stablediffusion is None:
        args.stablediffusion = build_tags_want_sd(os.environ)
    args.cpu_features = parse_cpu_features(args.cpu_features)
    if args.cpu_features and args.native:
        parser.error("--cpu-features needs --no-native (a native build already uses every feature of this CPU)")
    return args


def build_tags_want_sd(env: dict[str, str]) -> bool:
    """LocalAI's Makefile switch: BUILD_TAGS/GO_TAGS=stablediffusion (space or comma separated)."""
    tags = f"{env.get('BUILD_TAGS', '')} {env.get('GO_TAGS', '')}".replace(",", " ").split()
    return "stablediffusion" in tags


def parse_cpu_features(text: str) -> list[str]:
    features = [f.strip().upper() for f in text.split(",") if f.strip()]
    unknown = [f for f in features if f not in CPU_FEATURES]
    if unknown:
        raise SystemExit(f"build.py: unknown CPU feature(s) {', '.join(unknown)}; choose from {', '.join(CPU_FEATURES)}")
    return features


def cmake_options(args: argparse.Namespace, env: dict[str, str]) -> list[str]:
    """The -D options of one configuration; a change in them triggers a reconfigure."""
    opts = [
        f"-DCMAKE_BUILD_TYPE={'Debug' if args.debug else 'Release'}",
        f"-DLOCALAI_NATIVE={'ON' if args.native else 'OFF'}",
        f"-DLOCALAI_CPU_FEATURES={';'.join(args.cpu_features)}",
        f"-DLOCALAI_BLAS={'ON' if args.blas else 'OFF'}",
        f"-DLOCALAI_RPC={'ON' if args.rpc else 'OFF'}",
        f"-DLOCALAI_STABLEDIFFUSION={'ON' if args.stablediffusion else 'OFF'}",
        f"-DLOCALAI_UPSTREAM_TOOLS={'ON' if args.command == 'bench' else 'OFF'}",
    ]
    return opts + shlex.split(env.get("CMAKE_ARGS", ""))


# ---- checks and the virtual environment ----------------------------------------------------------

def check_prerequisites() -> None:
    missing = [tool for tool in ("gcc", "g++", "cmake") if shutil.which(tool) is None]
    include = Path(sysconfig.get_paths()["include"])
    if not (include / "Python.h").exists():
        missing.append(f"Python headers ({include}/Python.h)")
    if missing:
        raise BuildError(f"missing: {', '.join(missing)}.\nOn Debian/Ubuntu install them with:\n    {APT_HINT}")


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> None:
    """Create .venv and install the package (editable) with its dependencies when they changed."""
    stamp = VENV / ".localai-deps"
    extras = os.environ.get("LOCALAI_EXTRAS", "test")  # "" in the image's build stage: no test tools
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == wanted and venv_python().exists():
        return
    if not venv_python().exists():
        print("creating .venv ...", flush=True)
        run([sys.executable, "-m", "venv", str(VENV)], "creating the virtual environment",
            hint=f"install the venv module ({APT_HINT})")
    print("installing localai and its dependencies into .venv ...", flush=True)
    pip = [str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    run(pip + ["setuptools>=61", "wheel"], "installing setuptools")
    run(pip + ["--no-build-isolation", "-e", f"{ROOT}[{extras}]" if extras else str(ROOT)], "installing the package")
    stamp.write_text(wanted + "\n")


def run(cmd: list[str], what: str, *, log: Path | None = None, hint: str = "", cwd: Path = ROOT) -> None:
    if log is None:
        result = subprocess.run(cmd, cwd=cwd)
    else:
        with open(log, "ab") as fh:
            fh.write(f"\n$ {shlex.join(cmd)}\n".encode())
            fh.flush()
            result = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        detail = ""
        if log is not None:
            tail = log.read_text(errors="replace").splitlines()[-30:]
            detail = "\n".join("    " + line for line in tail) + f"\n(full log: {log})\n"
        raise BuildError(f"{what} failed (exit {result.returncode}).\n{detail}{hint}")


# ---- native build ---------------------------------------------------------------------------------

def configure_and_build(args: argparse.Namespace, targets: list[str]) -> None:
    from localai.fetch import fetch

    fetch("llama_cpp")
    fetch("whisper_cpp")
    if args.stablediffusion:
        fetch("ncnn")  # 37 MB archive: only the image backend needs it
    BUILD.mkdir(exist_ok=True)
    log = BUILD / "build.log"
    log.write_text("")
    opts = cmake_options(args, os.environ)
    config_stamp = BUILD / ".localai-config"
    config_key = json.dumps(opts)
    if not (BUILD / "CMakeCache.txt").exists() or not config_stamp.exists() or config_stamp.read_text() != config_key:
        print("configuring (cmake) ...", flush=True)
        run(["cmake", "-S", str(ROOT), "-B", str(BUILD), "-Wno-dev", *opts], "cmake configure", log=log,
            hint="Fix the problem above, or start over with `python3 build.py --clean`.")
        config_stamp.write_text(config_key)
    jobs = args.jobs or int(os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", 0)) or os.cpu_count() or 2
    started = time.monotonic()
    print(f"compiling {', '.join(targets)} with {jobs} jobs (log: {log.relative_to(ROOT)}) ...", flush=True)
    run(["cmake", "--build", str(BUILD), "-j", str(jobs), "--target", *targets], "compiling the native libraries",
        log=log, hint="Fix the problem above, or start over with `python3 build.py --clean`.")
    text = log.read_text(errors="replace")
    compiled = text.count("Building C")
    warnings = text.count("warning:")
    print(f"native build done in {time.monotonic() - started:.1f} s "
          f"({compiled} files compiled, {warnings} compiler warnings)", flush=True)


def install_native(args: argparse.Namespace) -> None:
    """Copy the shared libraries next to the package and compile the cffi modules against them."""
    from localai._cffi_src.builder import compile_all

    lib_dir = NATIVE_OUT / "lib"
    lib_dir.mkdir(parents=True, exist_ok=True)
    (NATIVE_OUT / "__init__.py").touch()
    # Only what the bindings load: the upstream tools' libraries (bench builds) stay in build/bin,
    # and the image backend ships only when this build asked for it (a library left in build/bin
    # by an earlier --stablediffusion build must not switch it on).
    wanted = ("libggml", "libllama.so", "libwhisper.so", "libbert.so", "liblocalai_llama.so",
              "liblocalai_whisper.so") + (
        ("libsdncnn.so",) if args.stablediffusion else ())
    if not args.stablediffusion:
        for stale in [*lib_dir.glob("libsdncnn.so*"), *NATIVE_OUT.glob("_sd_cffi.*.so")]:
            stale.unlink()
    for src in sorted((BUILD / "bin").glob("lib*.so*")):
        if not src.name.startswith(wanted):
            continue
        dst = lib_dir / src.name
        if src.is_symlink():
            if not dst.is_symlink() or os.readlink(dst) != os.readlink(src):
                dst.unlink(missing_ok=True)
                dst.symlink_to(os.readlink(src))
        elif not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime or dst.stat().st_size != src.stat().st_size:
            shutil.copy2(src, dst)
    compile_all(out_dir=NATIVE_OUT, lib_dir=lib_dir, tmp_dir=BUILD / "cffi", debug=args.debug)
    write_build_info(args)


def write_build_info(args: argparse.Namespace) -> None:
    """What `localai info` reports: pinned versions, the cmake options and the compiler."""
    from localai.fetch import load_manifest

    pins = load_manifest()
    compiler = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    info = {
        "sources": {name: f"{pin.package}=={pin.version} ({pin.member.split('/', 1)[-1]})"
                    for name, pin in pins.items() if pin.sdist and (name != "ncnn" or args.stablediffusion)},
        "cmake_options": cmake_options(args, os.environ),
        "compiler": compiler,
        "stablediffusion": bool(args.stablediffusion),
    }
    (NATIVE_OUT / "build-info.json").write_text(json.dumps(info, indent=2) + "\n")


def build(args: argparse.Namespace) -> None:
    targets = ["localai_native"]
    if args.command == "bench":
        targets += ["llama-server", "whisper-cli"]
    configure_and_build(args, targets)
    install_native(args)


def clean() -> None:
    for path in (BUILD, NATIVE_OUT):
        if path.exists():
            print(f"removing {path.relative_to(ROOT)}", flush=True)
            shutil.rmtree(path)


# ---- main -------------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.command == "image":  # needs only podman or docker: no venv, no native build here
        sys.path.insert(0, str(ROOT / "container"))
        from image import build_image

        try:
            return build_image(args)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            print(f"\nbuild.py: {exc}", file=sys.stderr)
            return 1
    try:
        if Path(sys.prefix).resolve() != VENV.resolve():
            # Outside the venv: check the machine, make the venv, then continue inside it
            # (where tqdm, cffi and the package are importable).
            check_prerequisites()
            ensure_venv()
            os.execv(str(venv_python()), [str(venv_python()), str(Path(__file__).resolve()), *argv])
        if args.clean:
            clean()
        build(args)
        if args.command == "build":
            print("built. Start the server with `python3 build.py run`, test with `python3 build.py test`.")
            return 0
        from localai.defaults import install_default_models

        install_default_models(ROOT / "models")
        if args.command == "run":
            exe = VENV / "bin" / "localai"
            os.execv(str(exe), [str(exe), "run", *args.rest])
        pytest_args = list(args.rest)
        if args.command == "bench":
            pytest_args = ["tests/bench", "-m", "bench", "-s", *pytest_args]
        os.execv(str(venv_python()), [str(venv_python()), "-m", "pytest", *pytest_args])
    except BuildError as exc:
        print(f"\nbuild.py: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # fetch errors and the like: say what failed without a traceback wall
        if type(exc).__module__.startswith("localai"):
            print(f"\nbuild.py: {exc}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
