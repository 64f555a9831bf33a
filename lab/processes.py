"""Starting and stopping the lab's processes inside its network namespaces.

Every process the lab starts runs through ``ip netns exec`` in a namespace
named with the lab's prefix, in a session of its own (it outlives ``lab up``),
with output to a log file. Stopping is by pid only, and only after checking
that the pid still is one of the lab's programs in one of the lab's
namespaces: after a crash, :func:`lab_processes` finds what is left from
``/proc`` by exactly that test, so nothing else on the machine is touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from devtools.process import alive
from lab.errors import LabError

NETNS_DIR = Path("/var/run/netns")
ETC_NETNS = Path(
    "/etc/netns"
)  # per-namespace /etc files (resolv.conf), as `ip netns exec` binds them
CALLER_MODULE = "lab.caller"
MARKERS = (CALLER_MODULE, "dnsmasq")
"""A lab process's command line contains one of these."""


def spawn(netns: str, argv: Sequence[str], log: Path, resolv_conf: Path | None = None) -> int:
    """Start ``argv`` in ``netns``; with ``resolv_conf``, that file is its /etc/resolv.conf."""
    command = ["ip", "netns", "exec", netns]
    if resolv_conf is not None:  # host-network pods share the node's namespace, not its resolver
        command += ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
        command += ['mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv_conf)]
    command += list(argv)
    environment = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, environment.get("PYTHONPATH")) if p
    )
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=environment,
            )
        except OSError as exc:
            raise LabError(f"cannot start {argv[0]} in {netns}: {exc.strerror}") from None
    return process.pid


def caller_argv(spec: Path) -> list[str]:
    return [sys.executable, "-m", CALLER_MODULE, str(spec)]


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(NETNS_DIR / name).st_ino
    except OSError:
        return None


def lab_namespaces(prefix: str) -> list[str]:
    """The namespaces whose names start with ``prefix``."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(name for name in names if name.startswith(prefix))


def is_lab_process(pid: int, inodes: Iterable[int]) -> bool:
    """``pid`` runs one of the lab's programs inside one of the namespaces ``inodes``."""
    try:
        inode = os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return False
    cmdline = b" ".join(_argv(pid)).decode(errors="replace")
    return inode in set(inodes) and any(marker in cmdline for marker in MARKERS)


def lab_processes(inodes: Iterable[int]) -> list[int]:
    """Every pid running a lab program inside the namespaces ``inodes``."""
    wanted = set(inodes)
    if not wanted:
        return []
    return [pid for pid in _pids() if is_lab_process(pid, wanted)]


def ip_commands(prefix: str) -> list[int]:
    """Pids of ``ip`` commands naming one of the namespaces ``prefix`` starts (a build's)."""
    named = prefix.encode()
    found = []
    for pid in _pids():
        argv = _argv(pid)
        if argv and os.path.basename(argv[0]) == b"ip" and any(a.startswith(named) for a in argv):
            found.append(pid)
    return found


def _pids() -> list[int]:
    return sorted(int(entry) for entry in os.listdir("/proc") if entry.isdigit())


def _argv(pid: int) -> list[bytes]:
    """The command line of ``pid``; empty if it is gone or unreadable."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    except OSError:
        return []


def stop(pids: Iterable[int], grace: float = 3.0) -> list[int]:
    """SIGTERM each pid, SIGKILL what is left after ``grace`` seconds; the pids stopped."""
    signalled = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            signalled.append(pid)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(pid) for pid in signalled):
        time.sleep(0.05)
    for pid in signalled:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(pid) for pid in signalled):
        time.sleep(0.05)
    return signalled


def signal_pids(pids: Iterable[int], signum: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
