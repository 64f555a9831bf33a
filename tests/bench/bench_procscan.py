"""Benchmark: one full socket-table scan of a busy node.

Builds a synthetic proc tree in a temporary directory (removed afterwards):
500 network namespaces of 2-3 pids each and 100,000 sockets in all — a few
listeners per namespace, the rest ESTABLISHED in both roles, IPv4, IPv6 and
IPv4-mapped. Every pid carries the tables (hard links), as in a real /proc,
so a walker that read each pid instead of each namespace would pay for it.

Times, best of 3 in the same run:
- the I/O floor: list the root, ``stat`` every pid's ``net/tcp`` (the
  namespace's id), read every ``cgroup`` file and each namespace's
  ``tcp``/``tcp6`` bytes, nothing else;
- the real scan: :func:`capture.procscan.scan_proc` (walker + parser +
  classifier). Goal: under 2 s.

The files come from the page cache; a real /proc also makes the kernel format
the tables on every read, so the floor there is higher than here:
``bench_sockdiag.py`` scans real namespaces, through /proc and sock_diag.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from capture.procscan import NAMESPACES, scan_proc

GOAL_SECONDS = 2.0
HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode\n"
)
LISTEN, ESTABLISHED = 0x0A, 0x01
SERVICE_PORTS = (80, 443, 5432, 6379, 8080, 9090, 9092)


def hex_address(ip: str) -> str:
    """An address as a little-endian kernel prints it."""
    packed = ipaddress.ip_address(ip).packed
    return "".join(packed[i : i + 4][::-1].hex().upper() for i in range(0, len(packed), 4))


def entry(slot: int, local: str, lport: int, remote: str, rport: int, st: int, ino: int) -> str:
    return (
        f"{slot:4d}: {hex_address(local)}:{lport:04X} {hex_address(remote)}:{rport:04X} "
        f"{st:02X} 00000000:00000000 00:00000000 00000000  1000        0 {ino} 1 "
        "0000000000000000 20 4 30 10 -1\n"
    )


def namespace_tables(rng: random.Random, index: int, sockets: int) -> tuple[str, str]:
    """(tcp, tcp6) text of one pod: 70 % IPv4, 30 % IPv6 (a third of it v4-mapped)."""
    pod_v4 = f"10.{index // 250}.{index % 250}.{index % 7 + 2}"
    pod_v6 = f"fd00::{index:x}:2"
    peers = [
        f"10.{rng.randrange(8)}.{rng.randrange(250)}.{rng.randrange(2, 250)}" for _ in range(300)
    ]
    ports = rng.sample(SERVICE_PORTS, 2)
    tcp: list[str] = [HEADER]
    tcp6: list[str] = [HEADER]
    for p in ports:
        tcp.append(entry(len(tcp) - 1, "0.0.0.0", p, "0.0.0.0", 0, LISTEN, rng.randrange(10**6)))
    tcp6.append(entry(0, "::", 9100, "::", 0, LISTEN, rng.randrange(10**6)))
    for _ in range(sockets - len(ports) - 1):
        ephemeral = rng.randrange(32768, 61000)
        peer = rng.choice(peers)
        server = rng.random() < 0.5
        kind = rng.random()
        if kind < 0.7:  # IPv4
            local, remote, table = pod_v4, peer, tcp
        elif kind < 0.8:  # IPv4 through a dual-stack socket
            local, remote, table = f"::ffff:{pod_v4}", f"::ffff:{peer}", tcp6
        else:  # IPv6
            local, remote, table = pod_v6, f"fd00::{rng.randrange(1, 2000):x}:2", tcp6
        if server:
            # Plain IPv6 connections can only have been accepted by the v6 wildcard.
            served = (9100,) if local == pod_v6 else (*ports, 9100)
            lport, rport = rng.choice(served), ephemeral
        else:
            lport, rport = ephemeral, rng.choice(SERVICE_PORTS)
        ino = rng.randrange(10**6, 10**8)
        table.append(entry(len(table) - 1, local, lport, remote, rport, ESTABLISHED, ino))
    return "".join(tcp), "".join(tcp6)


def build_tree(root: Path, namespaces: int, sockets: int, seed: int = 7) -> int:
    """Write the fake proc tree; returns the number of pids."""
    rng = random.Random(seed)
    pid = 100
    per_ns = sockets // namespaces
    for index in range(namespaces):
        uid = f"{index:08x}-0000-4000-8000-{rng.getrandbits(48):012x}"
        cgroup = (
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
            f"{uid.replace('-', '_')}.slice/cri-containerd-{rng.getrandbits(256):064x}.scope\n"
        )
        count = per_ns + (1 if index < sockets % namespaces else 0)
        tcp, tcp6 = namespace_tables(rng, index, count)
        first: Path | None = None
        for _ in range(2 + index % 2):
            base = root / str(pid)
            base.mkdir()
            (base / "cgroup").write_text(cgroup)
            (base / "net").mkdir()
            if first is None:
                (base / "net" / "tcp").write_text(tcp)
                (base / "net" / "tcp6").write_text(tcp6)
                first = base
            else:
                os.link(first / "net" / "tcp", base / "net" / "tcp")
                os.link(first / "net" / "tcp6", base / "net" / "tcp6")
            pid += rng.randrange(1, 40)
    return pid


def read_bytes_only(root: str) -> int:
    """The I/O a scan cannot avoid, with no parsing: bytes read."""
    total = 0
    first_pid: dict[int, str] = {}
    for name in sorted(os.listdir(root), key=lambda n: int(n) if n.isdigit() else -1):
        if not name.isdigit():
            continue
        link = os.stat(f"{root}/{name}/net/tcp").st_ino
        with open(f"{root}/{name}/cgroup", "rb", buffering=0) as f:
            total += len(f.readall())
        first_pid.setdefault(link, name)
    for name in first_pid.values():
        for table in ("tcp", "tcp6"):
            with open(f"{root}/{name}/net/{table}", "rb", buffering=0) as f:
                total += len(f.readall())
    return total


def best_of(runs: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=500)
    parser.add_argument("--sockets", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    console = Console()

    tmp = tempfile.mkdtemp(prefix="callmap-bench-proc-")
    try:
        root = Path(tmp)
        started = time.perf_counter()
        build_tree(root, args.namespaces, args.sockets)
        pids = sum(1 for name in os.listdir(root) if name.isdigit())
        console.print(f"built {root} in {time.perf_counter() - started:.1f} s")

        floor = best_of(args.runs, lambda: read_bytes_only(tmp))
        scan = best_of(args.runs, lambda: scan_proc(tmp))
        result = scan_proc(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    sockets = sum(ns.sockets for ns in result.namespaces)
    connections = sum(len(ns.connections) for ns in result.namespaces)
    servers = sum(c.role == "server" for ns in result.namespaces for c in ns.connections)
    assert result.counters[NAMESPACES] == args.namespaces, result.counters
    assert sockets == args.sockets, sockets

    table = Table(
        title=f"socket-table scan, best of {args.runs}",
        caption="I/O floor: read the same links and files, no parsing; "
        "full scan: walk + parse + classify",
    )
    for column in ("work", "namespaces", "pids", "sockets", "seconds", "sockets/s", "goal"):
        table.add_column(column, justify="left" if column == "work" else "right")
    table.add_row(
        "I/O floor",
        f"{args.namespaces:,}",
        f"{pids:,}",
        f"{sockets:,}",
        f"{floor:.3f}",
        f"{sockets / floor:,.0f}",
        "",
    )
    verdict = "[green]met[/]" if scan < GOAL_SECONDS else "[red]missed[/]"
    table.add_row(
        "full scan",
        f"{args.namespaces:,}",
        f"{pids:,}",
        f"{sockets:,}",
        f"{scan:.3f}",
        f"{sockets / scan:,.0f}",
        f"< {GOAL_SECONDS:.0f} s: {verdict}",
    )
    console.print(table)
    console.print(
        f"{connections:,} connections ({servers:,} server side), "
        f"{sum(len(ns.listeners) for ns in result.namespaces):,} listeners; "
        f"parse + classify cost {scan - floor:.3f} s over the floor"
    )


if __name__ == "__main__":
    main()
