"""Bookkeeping for the servers and tools callmap runs on a development machine.

Shared by the local Kafka broker, the local Kubernetes API server and the Helm
build: a file lock for one-time downloads and builds, a liveness check for a
recorded pid, loopback port probes, and ``go`` run with callmap's cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

from callmap.errors import CallmapError
from callmap.paths import cache_dir


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, or a reaped child of ours, does not)."""
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass  # not our child: fall back to probing
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    return True


def accepts_connections(port: int) -> bool:
    """True if something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_go(
    args: list[str],
    cwd: Path,
    *,
    error: type[CallmapError],
    needed_for: str,
    log: Path | None = None,
) -> str:
    """Run ``go`` with caches under callmap's cache and the installed toolchain only.

    Output goes to ``log`` if given (a build's progress), else is returned;
    a failure raises ``error`` with the last lines of it.
    """
    go = cache_dir() / "go"
    env = {
        **os.environ,
        "GOMODCACHE": str(go / "mod"),
        "GOCACHE": str(go / "build"),
        "GOFLAGS": "-mod=mod -modcacherw -buildvcs=false",
        "GOTOOLCHAIN": "local",  # build with the Go installed, never fetch another
        "GOWORK": "off",
        "CGO_ENABLED": "0",
    }
    with (log or Path(os.devnull)).open("w") as sink:
        into = sink if log else subprocess.PIPE
        try:
            result = subprocess.run(
                ["go", *args], cwd=cwd, env=env, stdout=into, stderr=into, text=True, check=False
            )
        except FileNotFoundError:
            raise error(f"Go (the `go` command) is needed to build {needed_for}") from None
    if result.returncode != 0:
        tail = "\n".join((log.read_text() if log else result.stderr).splitlines()[-25:])
        raise error(f"go {' '.join(args[:2])} failed in {cwd}:\n{tail}")
    return result.stdout or ""
