"""``callmap export --format csv``: how each call went, in flat columns at the end.

The health columns follow every column a reader already knew, so positions stay
where they were; their cells are plain numbers (RTT in milliseconds, three
decimals) or ``true``/``false``, empty when unknown, and the same figures the
other outputs show (sinks.health)."""

from __future__ import annotations

import csv
import io
import re

import msgspec
import pytest

from callmap.wire import Edge, Endpoint, FlowHealth, RttSamples
from sinks.health import rtt_fields
from sinks.maps.formats.tabular import (
    CLUSTER_COLUMNS,
    CSV_COLUMNS,
    HEALTH_COLUMNS,
    edges_csv,
    health_cells,
)

WEB = Endpoint(type="workload", namespace="shop", name="web", kind="Deployment")
API = Endpoint(type="workload", namespace="shop", name="api", kind="Deployment")
STRIPE = Endpoint(type="external", dns_name="api.stripe.com")

SLOW = FlowHealth(
    opened=40,
    closed=38,
    resets=0,
    bytes_sent=48_210,
    bytes_received=1_520_000,
    retransmits=6,
    rtt=RttSamples.of(*[1_100] * 38, 240_000, 250_000),
)
CONNTRACK_ONLY = FlowHealth(opened=12, closed=11, failed=3, resets=1)


def edge(edge_id: str, health: FlowHealth | None = None, **changes: object) -> Edge:
    one = Edge(
        edge_id=edge_id,
        event="refresh",
        cluster="prod",
        client=WEB,
        server=API,
        ports=(8080,),
        sources=("socket-client",),
        first_seen=1_700_000_000.0,
        last_seen=1_700_000_600.0,
        count=10,
        health=health,
    )
    return msgspec.structs.replace(one, **changes)


def rows(text: str) -> dict[str, dict[str, str]]:
    return {row["edge_id"]: row for row in csv.DictReader(io.StringIO(text, newline=""))}


def health_of(row: dict[str, str]) -> dict[str, str]:
    return {column: row[column] for column in HEALTH_COLUMNS}


def test_health_columns_come_after_every_column_readers_knew() -> None:
    (header, _) = csv.reader(io.StringIO(edges_csv([edge("a")]), newline=""))
    assert tuple(header) == CSV_COLUMNS + HEALTH_COLUMNS
    several = [edge("a"), edge("b", cluster="west")]
    (header, *_) = csv.reader(io.StringIO(edges_csv(several), newline=""))
    assert tuple(header) == CSV_COLUMNS + CLUSTER_COLUMNS + HEALTH_COLUMNS
    assert header.index("self_edge") == 22 and header.index("client_cluster") == 23  # as before


def test_a_call_with_round_trips_gives_its_counts_bytes_rtt_in_ms_and_the_marks() -> None:
    row = rows(edges_csv([edge("a", SLOW)]))["a"]
    assert health_of(row) == {
        "opened": "40",
        "closed": "38",
        "failed": "0",
        "resets": "0",
        "bytes_sent": "48210",
        "bytes_received": "1520000",
        "retransmits": "6",
        "rtt_samples": "40",
        "rtt_p50_ms": "1.117",  # the middle of 1.1 ms's bucket
        "rtt_p99_ms": "240.387",
        "rtt_mean_ms": "13.295",
        "failing": "false",
        "slow": "true",  # p99 at or above 200 ms
    }
    fields = rtt_fields(SLOW)  # the very figures of list --output json and the page
    for column in ("rtt_p50_ms", "rtt_p99_ms", "rtt_mean_ms"):
        assert float(row[column]) == fields[column]


def test_conntrack_alone_leaves_bytes_retransmits_and_rtt_empty() -> None:
    row = rows(edges_csv([edge("a", CONNTRACK_ONLY)]))["a"]
    assert health_of(row) == {
        "opened": "12",
        "closed": "11",
        "failed": "3",
        "resets": "1",
        "bytes_sent": "",  # the node's conntrack counts no bytes
        "bytes_received": "",
        "retransmits": "",  # no tcp_info: 0 would claim a measurement
        "rtt_samples": "",
        "rtt_p50_ms": "",
        "rtt_p99_ms": "",
        "rtt_mean_ms": "",
        "failing": "true",
        "slow": "false",
    }
    counted = health_of(rows(edges_csv([edge("a", FlowHealth(bytes_sent=0))]))["a"])
    assert counted["bytes_sent"] == "0" and counted["bytes_received"] == ""


def test_an_edge_without_health_has_every_health_cell_empty() -> None:
    total_only = edge("b", health_total=CONNTRACK_ONLY)  # nothing lately: nothing to say
    table = rows(edges_csv([edge("a"), total_only]))
    for row in table.values():
        assert set(health_of(row).values()) == {""}
        assert row["count"] == "10" and row["self_edge"] == "false"  # the rest as ever


def test_slow_follows_the_threshold_and_counts_at_its_value() -> None:
    p99 = SLOW.rtt.quantile_us(0.99) / 1000  # type: ignore[union-attr]
    assert health_of(rows(edges_csv([edge("a", SLOW)], slow_ms=1000))["a"])["slow"] == "false"
    assert health_of(rows(edges_csv([edge("a", SLOW)], slow_ms=p99))["a"])["slow"] == "true"


NUMBER_OR_MARK = re.compile(r"-?[0-9]+(\.[0-9]{3})?|true|false|")

HOSTILE = [
    FlowHealth(opened=-5, failed=-1, bytes_sent=-7, bytes_received=2**70, retransmits=-3),
    FlowHealth(opened=1, rtt=RttSamples(samples=1, sum_us=10**400, buckets=((10**6, 1),))),
    FlowHealth(opened=1, rtt=RttSamples(samples=2, sum_us=-9, buckets=((-40, 2),))),
    FlowHealth(rtt=RttSamples(samples=-2, sum_us=5, buckets=())),
    FlowHealth(rtt=RttSamples(samples=3, sum_us=3_000, buckets=((40, -3),))),
]


@pytest.mark.parametrize("health", HOSTILE)
def test_hostile_health_gives_plain_numbers_or_empty_cells_never_text(
    health: FlowHealth,
) -> None:
    cells = health_cells(health)
    assert len(cells) == len(HEALTH_COLUMNS)
    assert all(NUMBER_OR_MARK.fullmatch(cell) for cell in cells), cells
    assert "e" not in "".join(cells).replace("true", "").replace("false", "")  # no exponents
    text = edges_csv([edge("a", health)])  # and the whole export is written
    assert len(rows(text)["a"]) == len(CSV_COLUMNS) + len(HEALTH_COLUMNS)


def test_round_trips_no_socket_could_report_are_unknown_not_an_overflow() -> None:
    cells = dict(zip(HEALTH_COLUMNS, health_cells(HOSTILE[1]), strict=True))
    assert cells["opened"] == "1"
    rtt = ("rtt_samples", "rtt_p50_ms", "rtt_p99_ms", "rtt_mean_ms")
    assert [cells[column] for column in rtt] == ["", "", "", ""]
    assert cells["slow"] == "false"
