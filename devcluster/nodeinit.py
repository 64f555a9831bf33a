"""Process 1 of a development node: its mounts, its hostname, and its services, supervised.

Run by :mod:`devcluster.node` as ``python -m devcluster.nodeinit NODE_DIR``
inside new mount, UTS and PID namespaces; it enters the node's network
namespace itself, first. It reads ``NODE_DIR/init.json``::

    {"hostname": "node-1", "netns": "/run/netns/callmap-dev-node-1",
     "mounts": {"/var/lib/kubelet": "NODE_DIR/root/var/lib/kubelet", "/run/netns": "tmpfs"},
     "services": [{"name": "containerd", "argv": [...], "wait_for": "/run/containerd/..."}]}

and then, as a node's systemd would:

- gives the node its own ``/var/lib/...``, ``/run/...`` and ``/var/log`` by
  bind-mounting its directories over them (a mount namespace of its own, so
  nothing shows on the host and everything goes when the node does), and
  makes the tree shared within the node, as the kubelet's mount propagation
  needs;
- starts each service in order, the next one once the path it waits for exists,
  restarts one that exits (after a second), reaps every orphan (container
  shims re-parent to process 1), and writes ``NODE_DIR/status.json``;
- on SIGTERM stops the services in reverse order and exits; as process 1 of
  the PID namespace its exit ends every process left in the node.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLONE_NEWNET = 0x40000000
RESTART_DELAY = 1.0
WAIT_LIMIT = 60.0
STOP_GRACE = 10.0


@dataclass
class Service:
    name: str
    argv: list[str]
    log: Path
    wait_for: str | None = None
    pid: int | None = None
    restarts: int = 0
    last_exit: int | None = None
    restart_at: float = 0.0
    started: list[float] = field(default_factory=list)

    def start(self) -> None:
        with self.log.open("ab") as out:
            process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.pid = process.pid
        self.started.append(time.time())

    def report(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "started": self.started[-1] if self.started else None,
        }


def mount(source: str, target: str) -> None:
    """Give the node its own ``target``: a bind of ``source``, or a fresh tmpfs."""
    Path(target).mkdir(parents=True, exist_ok=True)
    if source == "tmpfs":
        command = ["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", target]
    else:
        Path(source).mkdir(parents=True, exist_ok=True)
        command = ["mount", "--bind", source, target]
    subprocess.run(command, check=True)


def join_network(path: str) -> None:
    """Enter the network namespace bound at ``path`` (``setns``; os.setns is Python 3.12)."""
    libc = ctypes.CDLL(None, use_errno=True)
    descriptor = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(descriptor, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns {path}: {os.strerror(error)}")
    finally:
        os.close(descriptor)


def main(node_dir: Path) -> int:
    config = json.loads((node_dir / "init.json").read_text())
    join_network(config["netns"])  # first: /run/netns is the node's own once mounted
    socket.sethostname(config["hostname"])
    for target, source in config["mounts"].items():
        mount(source, target)
    subprocess.run(["mount", "--make-rshared", "/"], check=True)

    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    logs = node_dir / "logs"
    logs.mkdir(exist_ok=True)
    services = [
        Service(s["name"], s["argv"], logs / f"{s['name']}.log", s.get("wait_for"))
        for s in config["services"]
    ]
    status = node_dir / "status.json"
    pending = list(services)
    waiting_since = time.monotonic()
    while not stopping:
        if pending and (pending[0].wait_for is None or Path(pending[0].wait_for).exists()):
            pending.pop(0).start()
            waiting_since = time.monotonic()
        elif pending and pending[0].wait_for and time.monotonic() - waiting_since > WAIT_LIMIT:
            print(f"gave up waiting for {pending[0].wait_for}", file=sys.stderr, flush=True)
            waiting_since = time.monotonic()
        _reap(services)
        now = time.monotonic()
        for service in services:
            if service.pid is None and service not in pending and now >= service.restart_at:
                service.restarts += 1
                service.start()
        report = {s.name: s.report() for s in services}
        _write(status, {"pid": os.getpid(), "time": time.time(), "services": report})
        time.sleep(0.2)
    for service in reversed(services):
        _stop(service, services)
    _write(status, {"stopped": time.time()})
    return 0


def _reap(services: list[Service]) -> None:
    """Collect every exited child; a service that exited is due for a restart."""
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        for service in services:
            if service.pid == pid:
                service.pid = None
                service.last_exit = os.waitstatus_to_exitcode(wait_status)
                service.restart_at = time.monotonic() + RESTART_DELAY


def _stop(service: Service, services: list[Service]) -> None:
    if service.pid is None:
        return
    os.kill(service.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while service.pid is not None and time.monotonic() < deadline:
        _reap(services)
        time.sleep(0.1)
    if service.pid is not None:
        os.kill(service.pid, signal.SIGKILL)


def _write(path: Path, value: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value))
    temporary.replace(path)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
