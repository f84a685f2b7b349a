"""`python3 build.py image`: build the Containerfile with podman (or docker), for this CPU or a
portable feature list, with or without the image backend. Standard library only.

Host-specific handling lives in ``host_quirks`` alone; with a registry and a normal engine this
is a plain ``podman build``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import host_quirks

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE = "debian:bookworm-slim"


class ImageError(RuntimeError):
    pass


def find_engine() -> str:
    """podman, else a docker whose daemon answers; CONTAINER_ENGINE picks one."""
    wanted = os.environ.get("CONTAINER_ENGINE")
    candidates = [wanted] if wanted else ["podman", "docker"]
    for name in candidates:
        path = shutil.which(name)
        if path is None:
            continue
        env = {**os.environ, **host_quirks.engine_env(path)}
        if subprocess.run([path, "info"], capture_output=True, env=env, timeout=120).returncode == 0:
            return path
    raise ImageError("no usable container engine: install podman (apt-get install podman runc), or start docker")


def engine_environment(engine: str) -> dict[str, str]:
    return {**os.environ, **host_quirks.engine_env(engine)}


def _has_image(engine: str, env: dict, name: str) -> bool:
    return subprocess.run([engine, "image", "inspect", name], capture_output=True, env=env).returncode == 0


def ensure_base(engine: str, env: dict, base: str | None) -> str:
    """The base image to build on: the one asked for (pulled if missing); when the default cannot
    be pulled (no registry), a local Debian base."""
    base = base or DEFAULT_BASE
    if _has_image(engine, env, base):
        return base
    try:
        pulled = subprocess.run([engine, "pull", base], capture_output=True, env=env, timeout=180).returncode == 0
    except subprocess.TimeoutExpired:
        pulled = False
    if pulled:
        return base
    if base != DEFAULT_BASE:
        raise ImageError(f"the base image {base} is not here and cannot be pulled")
    if _has_image(engine, env, host_quirks.LOCAL_BASE):
        return host_quirks.LOCAL_BASE
    return host_quirks.make_local_base(engine, env)


def build_image(args) -> int:
    engine = find_engine()
    env = engine_environment(engine)
    started = time.monotonic()
    base = ensure_base(engine, env, args.base)
    cpu = ",".join(args.cpu_features) if not args.native and args.cpu_features else "native"
    if not args.native and not args.cpu_features:
        cpu = "AVX,AVX2,FMA,F16C"  # portable default for --no-native: x86-64 from Haswell on
    command = [engine, "build", "-f", str(ROOT / "Containerfile"), "-t", args.tag,
               "--build-arg", f"BASE={base}", "--build-arg", f"CPU_FEATURES={cpu}",
               "--build-arg", f"STABLEDIFFUSION={1 if args.stablediffusion else 0}",
               *host_quirks.build_secrets(), str(ROOT)]
    if Path(engine).name == "podman":
        command[2:2] = ["--format", "docker"]  # keeps HEALTHCHECK (the OCI format has no field for it)
    print(f"building {args.tag} from {base} (CPU {cpu}, stablediffusion {'on' if args.stablediffusion else 'off'}) "
          f"with {Path(engine).name} ...", flush=True)
    result = subprocess.run(command, env=env)
    if result.returncode != 0:
        raise ImageError(f"{Path(engine).name} build failed (exit {result.returncode})")
    size = subprocess.run([engine, "image", "inspect", "--format", "{{.Size}}", args.tag], capture_output=True,
                          text=True, env=env).stdout.strip()
    print(f"built {args.tag}: {int(size) / 1e6:.0f} MB, in {time.monotonic() - started:.0f} s", flush=True)
    return 0
