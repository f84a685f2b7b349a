"""Everything the image build does differently because of the machine it runs on, in one place.

On an ordinary machine with a registry and a container engine that works out of the box, none of
this changes anything: the base image is pulled, the defaults are kept. What it handles (measured
on machines without registry access, see ../shared/container-notes.md there):

- podman's default ulimits are above what a process without CAP_SYS_RESOURCE may set: the
  defaults become the host's own hard limits (always allowed);
- crun refuses hybrid cgroups: runc is used when the cgroup tree is hybrid; without systemd as
  init, the cgroupfs manager;
- pip inside a build behind an intercepting proxy needs the host's CA bundle: it is passed as
  the build secret ``hostca`` (the Containerfile uses it only when present);
- no registry: a Debian base is made with debootstrap from the host's own apt mirror and
  imported as ``localhost/localai-base:bookworm``.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path

LOCAL_BASE = "localhost/localai-base:bookworm"
CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def _state_dir() -> Path:
    path = Path(os.environ.get("LOCALAI_CACHE") or Path.home() / ".cache" / "localai") / "container"
    path.mkdir(parents=True, exist_ok=True)
    return path


def engine_env(engine: str) -> dict[str, str]:
    """Environment for running ``engine`` here (podman: a containers.conf fitted to this host)."""
    if Path(engine).name != "podman":
        return {}
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text()) if Path("/proc/sys/kernel/pid_max").exists() else nproc
    limit = lambda value: "unlimited" if value == resource.RLIM_INFINITY else str(value)  # noqa: E731
    nproc_value = pid_max if nproc == resource.RLIM_INFINITY else min(nproc, pid_max)
    lines = ["[containers]", f'default_ulimits = ["nofile={limit(nofile)}:{limit(nofile)}", '
                             f'"nproc={nproc_value}:{nproc_value}"]', "", "[engine]"]
    hybrid = Path("/sys/fs/cgroup/unified").is_dir()
    if hybrid and shutil.which("runc"):
        lines.append('runtime = "runc"')
    if not Path("/run/systemd/system").is_dir():
        lines.append('cgroup_manager = "cgroupfs"')
        lines.append('events_logger = "file"')
    conf = _state_dir() / "containers.conf"
    conf.write_text("\n".join(lines) + "\n")
    return {"CONTAINERS_CONF": str(conf)}


def build_secrets() -> list[str]:
    """``--secret`` arguments: the host CA bundle, for pip inside the build."""
    for bundle in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), *CA_BUNDLES):
        if bundle and Path(bundle).is_file():
            return ["--secret", f"id=hostca,src={bundle}"]
    return []


def _apt_mirror() -> str | None:
    """The Debian mirror this host's apt uses (never hard-coded)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        match = re.search(r"^URIs:\s*(\S+)", sources.read_text(), re.M)
        if match:
            return match.group(1)
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        match = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", listing.read_text(), re.M)
        if match:
            return match.group(1)
    return None


def make_local_base(engine: str, env: dict[str, str]) -> str:
    """A minimal Debian bookworm base from the host's apt mirror, imported into ``engine``."""
    mirror = _apt_mirror()
    if not shutil.which("debootstrap") or mirror is None:
        raise RuntimeError("no base image can be pulled here and debootstrap (or an apt mirror) is missing: "
                           "install debootstrap, or pass --base IMAGE")
    with tempfile.TemporaryDirectory(prefix="localai-base-") as tmp:
        root = Path(tmp) / "rootfs"
        print(f"making a Debian base image with debootstrap (no registry here) ...", flush=True)
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(root), mirror], check=True,
                       stdout=subprocess.DEVNULL)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                     "usr/share/locale", "usr/share/info"):
            shutil.rmtree(root / junk, ignore_errors=True)
            (root / junk).mkdir(parents=True, exist_ok=True)
        sources = Path("/etc/apt/sources.list.d/debian.sources")
        if sources.exists():
            (root / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
            shutil.copy(sources, root / "etc/apt/sources.list.d/debian.sources")
            (root / "etc/apt/sources.list").unlink(missing_ok=True)
        # as Debian's own images do: no .deb files kept after an install
        (root / "etc/apt/apt.conf.d/docker-clean").write_text(
            'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };\n'
            'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";\n')
        (root / "etc/dpkg/dpkg.cfg.d/excludes").write_text(
            "path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n"
            "path-exclude /usr/share/info/*\n")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run([engine, "import", "-", LOCAL_BASE], stdin=tar.stdout, check=True, env={**os.environ, **env},
                       stdout=subprocess.DEVNULL)
        tar.wait()
    return LOCAL_BASE
