"""Compile the out-of-line (API mode) cffi modules against the built native libraries.

Declarations are not hand-written: each module's header is run through the C preprocessor
and the resulting declarations are filtered with pycparser, keeping every declaration of the
library's own header plus the *types* (not functions) of the ggml headers it includes. API
mode then makes the C compiler check every struct and signature against the real header, so
upstream drift fails the build instead of crashing at run time.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from localai import __version__

ROOT = Path(__file__).resolve().parent.parent.parent
MODULES = ("localai._cffi_src.llama", "localai._cffi_src.whisper", "localai._cffi_src.bert",
           "localai._cffi_src.sd")

# gcc extensions pycparser cannot parse, removed before parsing.
_STRIP_EXTENSIONS = ("-D__attribute__(x)=", "-D__restrict=", "-D__extension__=", "-D__asm__(x)=",
                     "-D__inline=", "-D__inline__=", "-D__builtin_va_list=int")
# Standard types that cffi knows but pycparser must see declared.
_PRELUDE_TYPES = ("int8_t", "int16_t", "int32_t", "int64_t", "uint8_t", "uint16_t", "uint32_t", "uint64_t",
                  "size_t", "FILE", "bool", "intptr_t", "uintptr_t", "va_list")
_PRELUDE_FILE = "<localai-prelude>"


def upstream_dir(spec: ModuleType) -> Path:
    if getattr(spec, "SOURCE_DIR", None):  # our own library: its header lives in the repository
        return ROOT / spec.SOURCE_DIR
    from localai.fetch import load_manifest

    return ROOT / load_manifest()[spec.SOURCE].dest


def header_cdef(header: Path, include_dirs: list[Path]) -> str:
    """cffi declarations for ``header``: its own declarations and the types of included headers."""
    from pycparser import c_ast, c_generator, c_parser

    cmd = ["gcc", "-E", "-std=c11", *_STRIP_EXTENSIONS, *[f"-I{d}" for d in include_dirs], str(header)]
    preprocessed = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    include_roots = tuple(str(d) for d in include_dirs)
    kept: list[str] = []
    keep = False
    for line in preprocessed.splitlines():
        if line.startswith("# "):  # line marker: which file the next lines come from
            keep = line.split('"')[1].startswith(include_roots)
            kept.append(line)
        else:
            kept.append(line if keep else "")
    # Array sizes written as sizeof() expressions are not constant for cffi's parser.
    source = "\n".join(kept).replace("sizeof(int32_t)", "4")
    prelude = f"typedef int {', '.join(_PRELUDE_TYPES)};\n"
    ast = c_parser.CParser().parse(f'# 1 "{_PRELUDE_FILE}"\n{prelude}{source}', filename=_PRELUDE_FILE)
    generator = c_generator.CGenerator()
    out = []
    for node in ast.ext:
        origin = node.coord.file if node.coord else ""
        if origin == _PRELUDE_FILE:
            continue
        is_function = isinstance(node, c_ast.Decl) and isinstance(node.type, c_ast.FuncDecl)
        if is_function and origin != str(header):
            continue  # ggml's own functions are not part of this binding
        out.append(generator.visit(node) + ";")
    return "\n".join(out)


def module_source(spec: ModuleType) -> tuple[str, str, list[Path]]:
    """(cdef, C source, include dirs) of one cffi module."""
    base = upstream_dir(spec)
    include_dirs = [(base / d).resolve() for d in spec.INCLUDE_DIRS]
    cdef = header_cdef(base / spec.HEADER, include_dirs)
    cdef += "\n" + spec.EXTRA_CDEF + "\nstatic const char * localai_bindings_version(void);\n"
    csrc = spec.INCLUDES + spec.CUSTOMIZATIONS + (
        f'\nstatic const char * localai_bindings_version(void) {{ return "{__version__}"; }}\n')
    return cdef, csrc, include_dirs


def compile_module(spec: ModuleType, out_dir: Path, lib_dir: Path, tmp_dir: Path, debug: bool) -> bool:
    """Compile one module if its declarations changed; returns True when it was (re)compiled."""
    import cffi

    cdef, csrc, include_dirs = module_source(spec)
    key = hashlib.sha256("\0".join([cdef, csrc, str(lib_dir), str(debug)]).encode()).hexdigest()
    stamp = out_dir / f".{spec.MODULE}.key"
    if stamp.exists() and stamp.read_text().strip() == key and list(out_dir.glob(f"{spec.MODULE}.*.so")):
        return False
    ffi = cffi.FFI()
    ffi.cdef(cdef, override=True)
    ffi.set_source(
        spec.MODULE,
        csrc,
        include_dirs=[str(d) for d in include_dirs],
        libraries=list(spec.LIBRARIES),
        library_dirs=[str(lib_dir)],
        # The libraries sit in lib/ beside the extension: found without LD_LIBRARY_PATH.
        extra_link_args=["-Wl,-rpath,$ORIGIN/lib"],
        extra_compile_args=["-Wno-deprecated-declarations"] + (["-O0", "-g"] if debug else ["-O2"]),
    )
    tmp_dir.mkdir(parents=True, exist_ok=True)
    built = Path(ffi.compile(tmpdir=str(tmp_dir), verbose=False, debug=debug))
    for old in out_dir.glob(f"{spec.MODULE}.*.so"):
        old.unlink()
    shutil.move(built, out_dir / built.name)  # the build folder may be another filesystem (a cache mount)
    stamp.write_text(key + "\n")
    return True


def compile_all(out_dir: Path, lib_dir: Path, tmp_dir: Path, debug: bool = False) -> None:
    for name in MODULES:
        spec = importlib.import_module(name)
        optional = getattr(spec, "REQUIRES_LIBRARY", None)
        if optional and not list(lib_dir.glob(f"lib{optional}.so*")):
            continue  # an optional library this build did not make (e.g. sdncnn without --stablediffusion)
        if compile_module(spec, out_dir, lib_dir, tmp_dir, debug):
            print(f"compiled cffi module {spec.MODULE}", file=sys.stderr, flush=True)
