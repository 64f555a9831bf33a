"""Benchmark: the sinks' formats and their local targets, records per second.

Pure formats (CEF in syslog, OCSF, JSON Lines, CSV, the map listing and
policies) and the two local targets (SQLite with one transaction per batch of
500, rotated JSON Lines fsynced per batch), on the same synthetic edges. The
Kafka loop and the remote targets are left out: their cost is the network's.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from callmap.wire import Edge, Endpoint
from sinks.changes import Change, Position
from sinks.maps.formats.labels import LabelBook
from sinks.maps.formats.listing import render_text
from sinks.maps.formats.netpol import network_policies
from sinks.maps.formats.tabular import edges_csv
from sinks.service.destinations.linefile import LineFileSink, edge_line
from sinks.service.destinations.sqlite import SqliteSink
from sinks.service.formats.cef import SyslogFormat, syslog_message
from sinks.service.formats.ocsf import ocsf_json

EDGES = 20_000
BATCH = 500


def _edges() -> list[Edge]:
    return [
        Edge(
            edge_id=f"edge-{i:06d}",
            event=("new", "refresh", "expired")[i % 3],  # type: ignore[arg-type]
            cluster="prod",
            client=Endpoint(
                type="workload",
                namespace=f"ns{i % 20}",
                name=f"client-{i % 500}",
                kind="Deployment",
            ),
            server=Endpoint(
                type="workload",
                namespace=f"ns{i % 7}",
                name=f"server-{i % 300}",
                kind="Deployment",
                service=f"svc-{i % 300}",
            ),
            ports=(8080,),
            sources=("dns", "socket-client"),
            first_seen=1_700_000_000.0,
            last_seen=1_700_000_000.0 + i,
            count=1 + i % 9,
        )
        for i in range(EDGES)
    ]


def _best_of(repeats: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


async def _sink_rate(make: Callable[[Path], object], edges: list[Edge]) -> float:
    with tempfile.TemporaryDirectory() as directory:
        sink = make(Path(directory))
        await sink.open()  # type: ignore[attr-defined]
        start = time.perf_counter()
        for offset in range(0, len(edges), BATCH):
            for index, edge in enumerate(edges[offset : offset + BATCH]):
                sink.add(Change.of(edge, Position("edges", 0, offset + index)))  # type: ignore[attr-defined]
            await sink.flush()  # type: ignore[attr-defined]
        elapsed = time.perf_counter() - start
        await sink.close()  # type: ignore[attr-defined]
    return len(edges) / elapsed


def main() -> None:
    edges = _edges()
    form = SyslogFormat(hostname="node-a")
    formats: list[tuple[str, Callable[[], object]]] = [
        ("syslog + CEF", lambda: [syslog_message(e, form) for e in edges]),
        ("OCSF JSON", lambda: [ocsf_json(e) for e in edges]),
        ("JSON line", lambda: [edge_line(Change.of(e)) for e in edges]),
        ("CSV", lambda: edges_csv(edges)),
        ("list (text)", lambda: render_text(edges)),
        ("NetworkPolicies", lambda: network_policies(edges, LabelBook())),
    ]
    table = Table(title=f"sinks: {EDGES} edges (batches of {BATCH} for targets)")
    table.add_column("what")
    table.add_column("records/s", justify="right")
    for name, run in formats:
        table.add_row(name, f"{EDGES / _best_of(3, run):,.0f}")
    targets = [
        ("SQLite sink (WAL, synchronous=FULL)", lambda d: SqliteSink(d / "map.db")),
        ("JSON Lines sink (fsync per batch)", lambda d: LineFileSink(d)),
    ]
    for name, make in targets:
        table.add_row(name, f"{asyncio.run(_sink_rate(make, edges)):,.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
