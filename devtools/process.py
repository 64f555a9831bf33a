"""Bookkeeping for the servers and tools callmap runs on a development machine.

Shared by the local Kafka broker, the local Kubernetes API server and cluster,
and the Helm and CoreDNS builds: a file lock for one-time downloads and builds,
a liveness check for a pid, the pid file of a server we started (spawn,
recognise, stop), port probes, ``go`` run with callmap's cache, and Go
programs built once into the cache.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class PidFile:
    """The pid file of a server we started, and how to tell that process from any other.

    Pids are reused, so a recorded pid counts only while the process's
    ``/proc/<pid>/cmdline`` contains every one of ``marks``; a record that names
    a dead or foreign process is removed and never signalled.
    """

    path: Path
    marks: tuple[bytes, ...]
    """What the command line must contain: its program, and the instance's directory."""

    def __post_init__(self) -> None:
        if not self.marks:
            raise ValueError("a pid file needs at least one mark to recognise its process by")

    def recorded(self) -> int | None:
        """The recorded pid, if that process still runs; None, and the record removed, if not."""
        try:
            pid = int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None  # none, or caught mid-write: leave it to its writer
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            cmdline = b""  # gone
        if not all(mark in cmdline for mark in self.marks):
            self.forget()  # stale: the pid is gone, a zombie, or runs something else now
            return None
        return pid

    def record(self, pid: int) -> None:
        self.path.write_text(str(pid))

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)

    def spawn(self, command: list[str], output: Path, exec_timeout: float = 5.0) -> int:
        """Start ``command``, its output appended to ``output``, and record its pid.

        The pid is recorded once the process shows its marks: until it has
        exec'd, its command line is its parent's, and anyone reading the
        record then (``callmap dev ... status``) would take it for stale.
        """
        with output.open("ab") as out:
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the shell that started it does not stop it
            )
        deadline = time.monotonic() + exec_timeout
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
                if all(mark in cmdline for mark in self.marks):
                    break
            time.sleep(0.005)
        self.record(process.pid)
        return process.pid

    def stop(self, timeout: float) -> bool:
        """SIGTERM the recorded process, SIGKILL it after ``timeout`` s; False if none ran."""
        pid = self.recorded()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
        self.forget()
        return True


def accepts_connections(port: int, host: str = "127.0.0.1") -> bool:
    """True if something accepts TCP connections on ``host``:``port`` (IPv4)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def free_port() -> int:
    """A loopback port that was free a moment ago, for a server started on it later."""
    return free_ports(1)


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive loopback ports free a moment ago (TCP and UDP).

    Picked at random below the kernel's ephemeral range, where it hands out
    no port by itself: a port there stays free until the server that asked
    binds it. The ephemeral port that binding to port 0 gives can be handed
    to any other socket's ``connect`` in between, and in CI brokers met that
    (``BindException``). Without such a range (or one starting too low) it
    falls back to asking the kernel.

    A port handed out is claimed (:func:`claim`) for :data:`PORT_CLAIM_SECONDS`:
    no other process that picks ports here (another test worker, say, between
    this pick and the bind of the server it is for) hands it out meanwhile,
    nor does this one.
    """
    now = time.monotonic()
    while _port_claims and now - _port_claims[0][0] > PORT_CLAIM_SECONDS:
        unclaim(_port_claims.popleft()[1])
    low = _ephemeral_start()
    while True:
        below = low - count > _LOWEST
        first = random.randrange(_LOWEST, low - count) if below else _kernel_port()
        ports = range(first, first + count)
        claimed = list(itertools.takewhile(claim, (f"port-{port}" for port in ports)))
        if len(claimed) == count and all(map(_bindable, ports)):
            _port_claims.extend((time.monotonic(), name) for name in claimed)
            return first
        for name in claimed:
            unclaim(name)


_LOWEST = 10_000
PORT_CLAIM_SECONDS = 300.0
"""How long a port handed out stays claimed: long enough for the slowest server
to bind it, and no descriptor is held for the life of a long test run."""
_port_claims: collections.deque[tuple[float, str]] = collections.deque()
CLAIMS = Path(tempfile.gettempdir()) / "callmap-claims"
"""Where names are claimed across processes, one locked file each."""
_claims: dict[str, int] = {}
"""This process's claims: name -> the descriptor of its locked file (-1: unchecked)."""


def claim(name: str) -> bool:
    """Claim ``name`` (a port, a subnet: something that processes running side
    by side, like test workers, pick at random and must not share) for this
    process, until it ends or :func:`unclaim` is called; False if another
    process holds it, or this one does. Where the claims cannot be written
    (another user's directory), every name is claimed unchecked."""
    if name in _claims:
        return False
    try:
        if not CLAIMS.is_dir():
            CLAIMS.mkdir(exist_ok=True)
            CLAIMS.chmod(0o1777)  # shared by every user's runs, like /tmp
        fd = os.open(CLAIMS / name, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        _claims[name] = -1
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    _claims[name] = fd
    return True


def unclaim(name: str) -> None:
    """Give up this process's claim of ``name``."""
    fd = _claims.pop(name, -1)
    if fd >= 0:
        os.close(fd)


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _kernel_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


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


def go_built(home: Path, name: str) -> bool:
    """True if ``home/bin/<name>`` was built to the end (its ``built-<name>`` stamp)."""
    return (home / f"built-{name}").exists() and (home / "bin" / name).exists()


def go_build_once(
    home: Path,
    packages: Mapping[str, str],
    prepare: Callable[[Path], str],
    *,
    error: type[CallmapError],
    needed_for: str,
) -> dict[str, Path]:
    """Each package built with Go into ``home/bin/<name>``, once; a stamp marks success.

    ``prepare(build_dir)`` writes the throwaway module (``go.mod``, any
    sources) and returns the linker flags. The binaries missing are built in one
    ``go build``, so that packages of one module share its compilation; a lock
    keeps two processes from building at once.
    """
    binaries = {name: home / "bin" / name for name in packages}

    def missing() -> list[str]:
        return [name for name in packages if not go_built(home, name)]

    if not missing():
        return binaries
    home.mkdir(parents=True, exist_ok=True)
    with locked(home / ".lock"):
        wanted = missing()  # another process may have built some while we waited
        if not wanted:
            return binaries
        build = home / "build"
        build.mkdir(exist_ok=True)
        ldflags = prepare(build)
        (home / "bin").mkdir(exist_ok=True)
        output = f"{home / 'bin'}/" if len(wanted) > 1 else str(binaries[wanted[0]])
        started = time.monotonic()
        command = ["build", "-trimpath", "-ldflags", ldflags, "-o", output]
        command += [packages[name] for name in wanted]
        run_go(command, build, error=error, needed_for=needed_for, log=home / "build.log")
        seconds = time.monotonic() - started
        for name in wanted:
            stamp = {"package": packages[name], "seconds": seconds}
            (home / f"built-{name}").write_text(json.dumps(stamp))
    return binaries
