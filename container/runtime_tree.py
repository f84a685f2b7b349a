"""Fill the image's runtime venv: the package's runtime dependencies, the package itself with
its native libraries, and nothing a running server does not read.

    python3 container/runtime_tree.py SRC VENV      (run by the Containerfile's build stage)

Standard library only. Dependencies come from pyproject.toml (one list for every install); the
package is copied rather than pip-installed so the shared libraries' version symlinks stay
symlinks (a wheel would turn each into a full copy).
"""

from __future__ import annotations

import compileall
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

# Not read at run time: the cffi build scripts, the bindings' build keys, tests bundled in wheels.
SKIP_IN_PACKAGE = shutil.ignore_patterns("_cffi_src", "__pycache__", "*.key", "*.pyc")
PRUNE = ("numpy/*/tests", "numpy/tests", "numpy/_core/include", "numpy/f2py", "numpy/_pyinstaller",
         "numpy/typing/tests", "PIL/*.pyi", "*/__pycache__")


def site_packages(venv: Path) -> Path:
    out = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return Path(out)


def main(src: Path, venv: Path) -> None:
    dependencies = tomllib.loads((src / "pyproject.toml").read_text())["project"]["dependencies"]
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + dependencies, check=True)
    site = site_packages(venv)
    shutil.copytree(src / "localai", site / "localai", symlinks=True, ignore=SKIP_IN_PACKAGE)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-y", "-q", "pip", "setuptools"],
                   check=True)
    for pattern in PRUNE:
        for path in site.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for library in (site / "localai" / "_native").rglob("*.so*"):
        if not library.is_symlink() and shutil.which("strip"):
            subprocess.run(["strip", "--strip-unneeded", str(library)], check=True)
    # Compiled once here: the server runs as a user who cannot write next to the sources.
    if not compileall.compile_dir(str(site), quiet=1, workers=0):
        sys.exit("compiling the venv's Python files failed")
    print(f"runtime tree ready in {venv} (python {sysconfig.get_python_version()})")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
