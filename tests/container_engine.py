"""A daemonless container engine (Debian's podman) for tests/test_container_image.py.

No registry image can be pulled on the project's machines, so the image the
Dockerfile starts ``FROM`` (``python:3.11-slim``) is stood in for by Debian
bookworm's own Python 3.11, debootstrapped from the Debian archive, and tagged
under that very name in a private podman store (never the machine's own): the
shipped Dockerfile then builds unchanged. The store lives under /var/tmp so the
base (about 80 s to make) and the layer cache survive between runs.

What differs from the real base: Python is Debian's 3.11.2 at /usr/bin (the
official image has its own build at /usr/local/bin), and the machine's CA
bundle goes in so pip reaches PyPI through this network's TLS proxy.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

BASE_IMAGE = "docker.io/library/python:3.11-slim"  # what deploy/Dockerfile starts FROM
STORE = Path(os.environ.get("SSO_TEST_PODMAN_STORE", "/var/tmp/fluxer-sso-test-podman"))
DEBIAN_MIRROR = "http://deb.debian.org/debian"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def missing_tools() -> str | None:
    """Why the engine cannot run here (a reason to skip), or None."""
    if os.geteuid() != 0:
        return "podman tests need root (rootful podman, debootstrap)"
    for tool in ("podman", "runc", "debootstrap"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"{tool} is not installed (apt-get install podman runc debootstrap)"
    return None


def _limit(kind: int, wanted: int) -> int:
    hard = resource.getrlimit(kind)[1]
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


class Podman:
    """``podman`` on a private store, with what this kernel and sandbox allow.

    runc, not crun: crun refuses a host with cgroup v1 and v2 mounted together
    ("hybrid mode"). Explicit ulimits: podman's defaults (nofile 1048576) are
    above this sandbox's hard limits, and without CAP_SYS_RESOURCE no runtime
    may raise them.
    """

    def __init__(self, store: Path = STORE) -> None:
        self.store = store
        self.runroot = Path(tempfile.gettempdir()) / f"fluxer-sso-test-podman-run-{os.getuid()}"
        nofile = _limit(resource.RLIMIT_NOFILE, 16384)
        nproc = _limit(resource.RLIMIT_NPROC, 4096)
        self.ulimits = ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]

    def command(self, *args: str) -> list[str]:
        return ["podman", "--root", str(self.store / "storage"), "--runroot", str(self.runroot),
                "--runtime", "runc", "--cgroup-manager", "cgroupfs", *args]  # fmt: skip

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args[:2])} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result

    def has_image(self, name: str) -> bool:
        return self.run("image", "exists", name, check=False).returncode == 0

    def ensure_base_image(self) -> None:
        """Debootstrap bookworm + python3 + venv into BASE_IMAGE, unless the store has it already."""
        if self.has_image(BASE_IMAGE):
            return
        self.store.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="rootfs-", dir=self.store) as rootfs:
            subprocess.run(
                ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,python-is-python3,ca-certificates",
                 "bookworm", rootfs, DEBIAN_MIRROR],
                check=True, capture_output=True, timeout=900,
            )  # fmt: skip
            shutil.copy(CA_BUNDLE, Path(rootfs) / "etc/ssl/certs/ca-certificates.crt")
            for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
                shutil.rmtree(Path(rootfs) / cache, ignore_errors=True)
            archive = Path(rootfs).with_suffix(".tar")
            with tarfile.open(archive, "w") as tar:
                tar.add(rootfs, arcname=".")
            try:
                self.run("import", "--change", f"ENV PIP_CERT={CA_BUNDLE}", "--change", 'CMD ["python3"]',
                         str(archive), BASE_IMAGE, timeout=300)  # fmt: skip
            finally:
                archive.unlink()
