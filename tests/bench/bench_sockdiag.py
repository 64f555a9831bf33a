"""Benchmark: a full socket-table pass of a busy node, /proc against netlink sock_diag.

Builds 500 real network namespaces holding 100,000 real TCP sockets
(``socketfarm.py``; root needed, everything taken down afterwards), then
measures in the same run, each way in a fresh Python process of its own (so
that its peak RSS is its own), several passes each:

- ``/proc scan``: :func:`capture.procscan.scan_proc` over the real ``/proc``,
  as the agent runs it today (walk every pid, read each namespace's
  ``net/tcp`` and ``tcp6``, parse, classify; the pids' pods kept from one
  pass to the next, so each ``cgroup`` file is read once), limited to the
  farm's namespaces, loopback kept;
- ``/proc tables``: the same tables read from one thread that enters each
  namespace in turn, and parsed; no walk, no classification: the /proc side
  of a like-for-like comparison;
- ``sock_diag+info``: :func:`capture.sockdiag.dump_namespaces`, every
  TCP socket with its tcp_info: one thread enters each namespace and opens a
  socket there, two dump, the sockets are closed;
- ``sock_diag+info, kept``: the same dumps through sockets kept open from one
  pass to the next (:class:`capture.sockdiag.DiagSockets`, as the agent
  keeps them): no namespace entered after the warm-up; with two dumping
  threads, with one, and with two reading through the Python loop instead
  of the one in C (``CALLMAP_PURE_PYTHON=1``; the ``loop`` column says
  which read each way);
- ``scan, sock_diag``: :func:`capture.diagscan.scan_diag`, the agent's whole
  scan with ``--tcp-info`` (the /proc scan's walk and classification, each
  namespace's LISTEN and ESTABLISHED sockets and their tcp_info through
  sock_diag): what replaces the /proc scan plus a sock_diag pass; with
  sockets of its own, and with sockets and the pids' pods kept (the agent's
  scans after its first), the latter with each loop.

Every way must find the same listeners and connections, by (namespace, state,
local, remote), or the bench fails. Goal (#19): a pass under 0.2 s.

By default each namespace has a TCP hash table of its own (1,024 buckets, set
in a parent namespace the farm makes, not on the host), as pods have on a node
that sets ``net.ipv4.tcp_child_ehash_entries`` (docs/deploy.md): the goal is
measured so. ``--child-ehash 0`` lets them share the host's table, as pods do
on a node that does not; every per-namespace read, /proc or sock_diag, then
walks all 100,000 sockets once per namespace, and a pass takes seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

GOAL_SECONDS = 0.2
WAYS = {
    "imports": "imports only",
    "proc-scan": "/proc scan",
    "proc-tables": "/proc, setns",
    "sockdiag": "sock_diag+info",
    "sockdiag-kept": "sock_diag+info, kept",
    "sockdiag-kept-1": "  the same, 1 thread",
    "sockdiag-kept-py": "  the same, Python loop",
    "diag-scan": "scan, sock_diag",
    "diag-scan-kept": "scan, kept sockets",
    "diag-scan-kept-py": "  the same, Python loop",
}
PURE_PYTHON = "-py"
"""A way whose name ends so is the way without it, with the C loop turned off
(CALLMAP_PURE_PYTHON=1)."""
Key = tuple[int, str, str, int, str, int]
"""(namespace id, state, local address, local port, remote address, remote port)."""


# ---- the worker: one way, in a process of its own -------------------------------


Summary = Callable[[], tuple[int, list[Key]]]
"""Sockets found, and the comparison's keys: worked out after the clock stops."""
Pass = Callable[[], Summary]


def _proc_scan(names: Sequence[str]) -> Pass:
    from capture.procscan import PodsOfPids, scan_proc
    from capture.sniffer import scanned_namespace_ids

    ids = scanned_namespace_ids(names)  # the agent's --scan-netns, resolved once
    pods = PodsOfPids()  # kept from pass to pass, as the agent keeps it

    def run() -> Summary:
        result = scan_proc("/proc", include_loopback=True, only_netns=ids, pods=pods)
        return lambda: _scan_summary(result)

    return run


def _diag_scan(names: Sequence[str], *, kept: bool = False) -> Pass:
    from capture.diagscan import scan_diag
    from capture.procscan import PodsOfPids
    from capture.sniffer import scanned_namespace_ids
    from capture.sockdiag import DiagSockets

    ids = scanned_namespace_ids(names)
    sockets = DiagSockets() if kept else None  # closed when the process ends
    pods = PodsOfPids() if kept else None

    def run() -> Summary:
        scan = scan_diag("/proc", include_loopback=True, only_netns=ids, kept=sockets, pods=pods)

        def summary() -> tuple[int, list[Key]]:
            assert len(scan.sockets) == len(scan.result.namespaces), scan.result.counters
            return _scan_summary(scan.result)

        return summary

    return run


def _scan_summary(result: Any) -> tuple[int, list[Key]]:
    keys: list[Key] = []
    for ns in result.namespaces:
        keys += [
            (ns.netns, "ESTABLISHED", c.local_ip, c.local_port, c.remote_ip, c.remote_port)
            for c in ns.connections
        ]
        keys += [(ns.netns, "LISTEN", ip, port, "", 0) for ip, port in ns.listeners]
    return sum(ns.sockets for ns in result.namespaces), keys


def _proc_tables(names: Sequence[str]) -> Pass:
    from capture.procnet import TcpState, parse_tcp_table
    from capture.procscan import namespace_id
    from capture.sniffer import enter_netns, netns_path

    def run() -> Summary:
        tables: list[tuple[int, Any]] = []

        def walk() -> None:
            for name in names:
                enter_netns(netns_path(name))
                netns = namespace_id("/proc/thread-self")
                with open("/proc/thread-self/net/tcp", "rb", buffering=0) as f:
                    tcp = f.readall()
                with open("/proc/thread-self/net/tcp6", "rb", buffering=0) as f:
                    tcp6 = f.readall()
                tables.append((netns, parse_tcp_table(tcp)))
                tables.append((netns, parse_tcp_table(tcp6)))

        thread = threading.Thread(target=walk)
        thread.start()
        thread.join()

        def summary() -> tuple[int, list[Key]]:
            keys: list[Key] = []
            for netns, table in tables:
                for s in table.sockets:
                    if s.state == TcpState.LISTEN:
                        keys.append((netns, "LISTEN", s.local_ip, s.local_port, "", 0))
                    elif s.state == TcpState.ESTABLISHED:
                        keys.append(
                            (netns, "ESTABLISHED", s.local_ip, s.local_port, s.remote_ip,
                             s.remote_port)
                        )  # fmt: skip
            return sum(len(table.sockets) for _, table in tables), keys

        return summary

    return run


def _sockdiag(names: Sequence[str], *, kept_threads: int = 0) -> Pass:
    from capture.procnet import TcpState
    from capture.sockdiag import DiagSockets, dump_namespaces

    kept = DiagSockets(threads=kept_threads) if kept_threads else None
    ids = sorted(_ids(names)) if kept is not None else []

    def dump() -> list[Any]:
        if kept is None:
            return dump_namespaces(names)
        if not kept:  # the warm-up
            kept.open(names)
        return list(kept.dump(ids).values())

    def run() -> Summary:
        dumps = dump()

        def summary() -> tuple[int, list[Key]]:
            keys: list[Key] = []
            for dump in dumps:
                assert dump.error is None and dump.netns is not None and not dump.dropped, dump
                for s in dump.sockets:
                    if s.state == TcpState.LISTEN:
                        keys.append((dump.netns, "LISTEN", s.local_ip, s.local_port, "", 0))
                    elif s.state == TcpState.ESTABLISHED:
                        keys.append(
                            (dump.netns, "ESTABLISHED", s.local_ip, s.local_port, s.remote_ip,
                             s.remote_port)
                        )  # fmt: skip
                assert all(s.rtt_us is not None for s in dump.sockets if s.state in (1, 10))
            return sum(len(dump.sockets) for dump in dumps), keys

        return summary

    return run


def _imports(names: Sequence[str]) -> Pass:
    import capture.procscan
    import capture.sockdiag  # noqa: F401

    return lambda: lambda: (0, [])


def _ids(names: Sequence[str]) -> frozenset[int]:
    from capture.sniffer import scanned_namespace_ids

    ids = scanned_namespace_ids(names)
    assert ids is not None
    return ids


PASSES: dict[str, Callable[[Sequence[str]], Pass]] = {
    "imports": _imports,
    "proc-scan": _proc_scan,
    "proc-tables": _proc_tables,
    "sockdiag": _sockdiag,
    "sockdiag-kept": lambda names: _sockdiag(names, kept_threads=2),
    "sockdiag-kept-1": lambda names: _sockdiag(names, kept_threads=1),
    "diag-scan": _diag_scan,
    "diag-scan-kept": lambda names: _diag_scan(names, kept=True),
}


def worker(way: str, names_file: str, runs: int) -> None:
    """Run one way ``runs`` times (after one untimed warm-up); print JSON."""
    names = Path(names_file).read_text().split()
    run = PASSES[way.removesuffix(PURE_PYTHON)](names)
    run()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        summary = run()
        times.append(time.perf_counter() - started)
    sockets, keys = summary()
    peak_kb = _peak_rss_kib()
    from capture.native import LOOP_IN_C

    loop = "C" if LOOP_IN_C else "Python"
    json.dump(
        {"times": times, "sockets": sockets, "peak_kb": peak_kb, "keys": keys, "loop": loop},
        sys.stdout,
    )


def _peak_rss_kib() -> int:
    """This process's peak RSS since its exec (``VmHWM``). Not ``ru_maxrss``: Linux
    carries that over from the process that forked it, here the bench, whose
    results grow from one way to the next."""
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))


# ---- the bench ----------------------------------------------------------------------


def _measure(way: str, names_file: str, runs: int) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            way,
            "--names-file",
            names_file,
            "--runs",
            str(runs),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CALLMAP_PURE_PYTHON": "1" if way.endswith(PURE_PYTHON) else "0"},
    )
    if done.returncode != 0:
        raise SystemExit(f"{way} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=500)
    parser.add_argument("--sockets", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--child-ehash",
        type=int,
        default=1024,
        metavar="BUCKETS",
        help="the size of each namespace's own TCP hash table (tcp_child_ehash_entries); "
        "0: the host's shared table",
    )
    parser.add_argument("--worker", choices=sorted(WAYS), help=argparse.SUPPRESS)
    parser.add_argument("--names-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.names_file, args.runs)
        return
    if os.geteuid() != 0:
        raise SystemExit("needs root: it makes network namespaces")

    from socketfarm import ehash_buckets, socket_farm

    console = Console(width=max(Console().width, 100))
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    with socket_farm(args.namespaces, args.sockets, child_ehash=args.child_ehash) as farm:
        buckets = ehash_buckets(farm.names[0])
        console.print(
            f"made {len(farm.names)} namespaces, {farm.count:,} sockets "
            f"in {time.perf_counter() - started:.1f} s; TCP hash table: "
            + (
                f"{buckets:,} buckets a namespace"
                if buckets > 0
                else f"{-buckets:,} buckets, shared"
            )
        )
        names_file = f"/tmp/{farm.names[0]}.names"
        Path(names_file).write_text("\n".join(farm.names))
        try:
            for way in WAYS:
                results[way] = _measure(way, names_file, args.runs)
        finally:
            os.unlink(names_file)

    diag = {tuple(k) for k in results["sockdiag"]["keys"]}
    for way in set(WAYS) - {"imports", "sockdiag"}:
        proc = {tuple(k) for k in results[way]["keys"]}
        if proc != diag:
            raise SystemExit(
                f"{way} and sock_diag disagree: {len(proc - diag)} only in {way}, "
                f"{len(diag - proc)} only in sock_diag, e.g. {sorted(proc ^ diag)[:5]}"
            )
    assert results["sockdiag"]["sockets"] == farm.count, (
        results["sockdiag"]["sockets"],
        farm.count,
    )

    table = Table(
        title=f"socket tables of {args.namespaces} namespaces, {farm.count:,} sockets "
        f"({'own' if buckets > 0 else 'shared'} TCP hash of {abs(buckets):,} buckets): "
        f"{args.runs} passes each, after a warm-up",
        caption=f"each way in a fresh process; the same {len(diag):,} listeners and "
        "connections found by every way",
    )
    columns = ("way", "loop", "min s", "median s", "max s", "sockets", "sockets/s", "peak RSS")
    for column in (*columns, "goal"):
        table.add_column(column, justify="left" if column == "way" else "right")
    for way, label in WAYS.items():
        result = results[way]
        times = result["times"]
        goal = ""
        if way.startswith(("sockdiag", "diag-scan")):
            met = statistics.median(times) < GOAL_SECONDS
            goal = f"< {GOAL_SECONDS} s: " + ("[green]met[/]" if met else "[red]missed[/]")
        loop = result["loop"] if way.startswith(("sockdiag", "diag-scan")) else ""
        if way == "imports":
            table.add_row(label, "", "", "", "", "", "", f"{result['peak_kb'] / 1024:.0f} MB", "")
            continue
        table.add_row(
            label,
            loop,
            f"{min(times):.3f}",
            f"{statistics.median(times):.3f}",
            f"{max(times):.3f}",
            f"{result['sockets']:,}",
            f"{result['sockets'] / statistics.median(times):,.0f}",
            f"{result['peak_kb'] / 1024:.0f} MB",
            goal,
        )
    console.print(table)
    base = statistics.median(results["proc-scan"]["times"])
    like = statistics.median(results["proc-tables"]["times"])
    fast = statistics.median(results["sockdiag"]["times"])
    scan = statistics.median(results["diag-scan"]["times"])
    kept = statistics.median(results["diag-scan-kept"]["times"])
    console.print(
        f"sock_diag with tcp_info: {base / fast:.1f}x the /proc scan, "
        f"{like / fast:.1f}x the /proc tables read the same way (medians); "
        f"the scan through sock_diag: {base / scan:.1f}x the /proc scan, "
        f"{(base + fast) / scan:.1f}x the /proc scan plus a sock_diag pass; "
        f"with its sockets kept: {base / kept:.1f}x the /proc scan"
    )


if __name__ == "__main__":
    main()
