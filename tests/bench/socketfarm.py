"""A busy node's sockets, for real: many network namespaces full of TCP sockets.

The socket-table benchmarks that read the kernel (``bench_sockdiag.py``) need
what ``bench_procscan.py`` writes as text: 500 namespaces and 100,000 sockets
with a pod's shape. Here they are real sockets, made by a thread inside each
namespace (they keep the namespace they were made in) and held by a few holder
processes (a few thousand sockets each: the open-files limit), with one
``sleep`` process in each namespace so that a walk of ``/proc`` finds it as it
finds a pod. Per namespace: two IPv4 listeners on
service ports and a dual-stack one on 9100; then connections with both ends
in the namespace, 70 % IPv4 (from one of 300 peer addresses), 10 % IPv4 to
the dual-stack listener (IPv4-mapped on the accepted side), 20 % IPv6.

With ``child_ehash``, the namespaces are made as children of one parent
namespace whose ``net.ipv4.tcp_child_ehash_entries`` is set (the host's is
left alone): each then has a TCP hash table of its own of that many buckets,
instead of sharing the host's (262,144 here), which a dump or a read of
``net/tcp`` walks in full whatever the namespace holds.

Addresses are loopback ones (every 127/8 address answers on ``lo``), so no
address needs setting up; a scan that drops loopback must be told to keep it.
Namespaces are named ``sdx<hex>-<n>``, and everything is taken down on the way
out however it is left: processes killed, sockets closed, namespaces deleted.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import random
import resource
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# tests/ and the repository: this file also runs as the holder process.
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]
from helpers.netns import network_namespaces  # noqa: E402

from capture.sniffer import in_netns  # noqa: E402

SERVICE_PORTS = (80, 443, 5432, 6379, 8080, 9090, 9092)
DUAL_STACK_PORT = 9100
CLONE_NEWNET = 0x40000000


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def ehash_buckets(name: str) -> int:
    """The buckets of a namespace's TCP hash table; negative when it is the host's."""
    done = subprocess.run(
        ["ip", "netns", "exec", name, "sysctl", "-n", "net.ipv4.tcp_ehash_entries"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


def _attach_new_netns(name: str) -> None:
    """A new network namespace, child of the calling thread's, named ``name``."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    _ip("netns", "attach", name, str(threading.get_native_id()))


@contextlib.contextmanager
def _child_namespaces(prefix: str, names: list[str], child_ehash: int) -> Iterator[None]:
    """``names`` made as children of ``<prefix>-parent``, whose children get TCP hash
    tables of ``child_ehash`` buckets; every one made is deleted on the way out."""
    parent = f"{prefix}-parent"
    made: list[str] = []
    try:
        _ip("netns", "add", parent)
        made.append(parent)
        _ip("netns", "exec", parent, "sysctl", "-qw",
            f"net.ipv4.tcp_child_ehash_entries={child_ehash}")  # fmt: skip
        for name in names:
            in_netns(parent, lambda: _attach_new_netns(name))  # noqa: B023
            made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        yield
    finally:
        for name in reversed(made):
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@dataclass
class SocketFarm:
    """The namespaces made and what holds their sockets open."""

    names: list[str]
    """The namespaces, by their names under /var/run/netns."""
    count: int = 0
    """Sockets made."""
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    """The holders of the sockets, and a ``sleep`` in each namespace."""


def _open_files_limit() -> int:
    """This process's open files, raised to the hard limit (raising that takes
    CAP_SYS_RESOURCE, which a container's root may lack): the sockets are held
    by several processes of a few thousand each instead."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def hold(spec: str) -> None:
    """The holder process: make the sockets of the namespaces in ``spec`` (JSON: a
    list of [name, index, count, seed]), say how many, keep them until stdin closes."""
    _open_files_limit()
    held: list[socket.socket] = []
    for name, index, count, seed in json.loads(spec):
        rng = random.Random(seed)
        held += in_netns(name, lambda: _fill(rng, index, count))  # noqa: B023
    print(len(held), flush=True)
    sys.stdin.read()


def _fill(rng: random.Random, index: int, count: int) -> list[socket.socket]:
    """``count`` sockets in the calling thread's namespace (``count`` >= 3)."""
    made: list[socket.socket] = []

    def listen(family: int, address: str, port: int) -> None:
        listener = socket.socket(family, socket.SOCK_STREAM)
        made.append(listener)
        if family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind((address, port))
        listener.listen(256)

    ports = rng.sample(SERVICE_PORTS, 2)
    for port in ports:
        listen(socket.AF_INET, "0.0.0.0", port)
    listen(socket.AF_INET6, "::", DUAL_STACK_PORT)
    listeners = {port: made[i] for i, port in enumerate((*ports, DUAL_STACK_PORT))}
    if (count - len(made)) % 2:
        listen(socket.AF_INET, "127.0.0.1", 7000)
    pod = f"127.{1 + index // 250}.{index % 250}.2"
    peers = [f"127.{rng.randrange(100, 200)}.{rng.randrange(250)}.{rng.randrange(2, 250)}"
             for _ in range(300)]  # fmt: skip
    while len(made) < count:
        kind = rng.random()
        if kind < 0.7:
            family, source, target, port = socket.AF_INET, rng.choice(peers), pod, rng.choice(ports)
        elif kind < 0.8:
            family, source, target = socket.AF_INET, rng.choice(peers), pod
            port = DUAL_STACK_PORT
        else:
            family, source, target, port = socket.AF_INET6, "::1", "::1", DUAL_STACK_PORT
        client = socket.socket(family, socket.SOCK_STREAM)
        made.append(client)
        client.bind((source, 0))
        client.connect((target, port))
        accepted, _ = listeners[port].accept()
        made.append(accepted)
    return made


@contextlib.contextmanager
def socket_farm(
    namespaces: int, sockets: int, *, child_ehash: int = 0, seed: int = 7
) -> Iterator[SocketFarm]:
    """``namespaces`` fresh network namespaces holding ``sockets`` TCP sockets in all;
    with hash tables of ``child_ehash`` buckets of their own if not 0."""
    prefix = f"sdx{secrets.token_hex(3)}"
    farm = SocketFarm([f"{prefix}-{n}" for n in range(namespaces)])
    room = _open_files_limit() - 1000
    made: contextlib.AbstractContextManager[object]
    if child_ehash:
        made = _child_namespaces(prefix, farm.names, child_ehash)
    else:
        made = network_namespaces(*farm.names)
    with made:
        try:
            chunks: list[list[tuple[str, int, int, int]]] = [[]]
            for index, name in enumerate(farm.names):
                count = sockets // namespaces + (1 if index < sockets % namespaces else 0)
                if sum(c for _, _, c, _ in chunks[-1]) + count > room:
                    chunks.append([])
                chunks[-1].append((name, index, count, seed * 100_003 + index))
            holders = [
                subprocess.Popen(
                    [sys.executable, __file__, json.dumps(chunk)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for chunk in chunks
            ]
            farm.processes += holders
            for name in farm.names:
                farm.processes.append(
                    subprocess.Popen(["ip", "netns", "exec", name, "sleep", "infinity"], text=True)
                )
            for holder in holders:
                assert holder.stdout is not None
                line = holder.stdout.readline()
                if not line:
                    raise RuntimeError(f"a socket holder failed ({holder.wait()})")
                farm.count += int(line)
            yield farm
        finally:
            for process in farm.processes:
                process.kill()
                process.wait()


if __name__ == "__main__":
    hold(sys.argv[1])
