"""The map picture marks failing calls red and slow ones orange; calls without health
are drawn as before."""

from __future__ import annotations

import re
import shutil

import msgspec
import pytest

from callmap.wire import Edge, Endpoint, FlowHealth, RttSamples
from sinks.maps.formats.dot import render_dot
from sinks.maps.graphviz import render_graph

RED = "#c62828"
ORANGE = "#e65100"
CALL = Edge(
    edge_id="e1",
    event="refresh",
    cluster="prod",
    client=Endpoint(type="workload", namespace="shop", name="web", kind="Deployment"),
    server=Endpoint(type="workload", namespace="shop", name="api", kind="Deployment"),
    ports=(8080,),
    sources=("socket-client",),
    first_seen=1700000000.0,
    last_seen=1700000060.0,
    count=3,
)


def arrow(dot: str) -> str:
    (line,) = [line for line in dot.splitlines() if " -> " in line and "[" in line]
    return line


def drawn(health: FlowHealth | None, event: str = "refresh", slow_ms: float = 200) -> str:
    dot = render_dot([msgspec.structs.replace(CALL, health=health, event=event)], slow_ms=slow_ms)
    return arrow(dot)


def round_trips(*ms: float, **counts: int) -> FlowHealth:
    """Health with these round-trip times (ms, told within their 9 % buckets) and counts."""
    return FlowHealth(rtt=RttSamples.of(*(round(value * 1000) for value in ms)), **counts)


def test_a_call_without_health_is_drawn_as_before() -> None:
    assert drawn(None) == (
        '  n1 -> n0 [tooltip="web -> api\\nports: 8080\\nlast seen: 2023-11-14T22:14:20.000Z'
        '\\nfirst seen: 2023-11-14T22:13:20.000Z\\nsources: socket-client; sightings: 3",'
        ' label="8080"];'
    )


def test_a_healthy_call_tells_its_health_on_hover_only() -> None:
    line = drawn(FlowHealth(opened=5, closed=5, bytes_sent=2000))
    assert "\\nlately: 5 opened, 5 closed, 2 kB sent" in line
    assert RED not in line and 'label="8080"' in line


def test_a_failing_call_is_red_with_its_failures_under_its_ports() -> None:
    line = drawn(FlowHealth(opened=12, failed=3, resets=1))
    assert f'color="{RED}", fontcolor="{RED}", penwidth=2' in line
    assert 'label="8080\\n3 failed, 1 reset (12 opened)"' in line
    assert 'label="8080\\n2 failed"' in drawn(FlowHealth(failed=2))  # nothing answered


def test_an_expired_call_whose_last_calls_failed_is_dashed_and_red_once() -> None:
    line = drawn(FlowHealth(failed=1), event="expired")
    assert "style=dashed" in line
    assert re.findall(r"(?<!font)color=\"[^\"]*\"", line) == [f'color="{RED}"']  # no grey over it
    assert 'style=dashed, color="#aaaaaa"' in drawn(FlowHealth(opened=1), event="expired")


def test_a_slow_call_is_orange_with_its_p99_under_its_ports() -> None:
    line = drawn(round_trips(1.9, 1.9, 1.9, 240, opened=4, retransmits=3))
    assert f'color="{ORANGE}", fontcolor="{ORANGE}", penwidth=2' in line
    assert 'label="8080\\np99 240 ms"' in line
    assert "\\nlately: 4 opened, RTT p50 1.9 ms, p99 240 ms, 3 retransmits" in line  # on hover
    assert RED not in line


def test_a_fast_call_with_round_trips_tells_them_on_hover_only() -> None:
    line = drawn(round_trips(1.9, 3.2, opened=2))
    assert "RTT p50 1.9 ms, p99 3.2 ms" in line and 'label="8080"' in line
    assert ORANGE not in line and RED not in line


def test_a_call_both_failing_and_slow_is_red_with_its_p99_under_its_failures() -> None:
    line = drawn(round_trips(480, opened=5, failed=2))
    assert f'color="{RED}", fontcolor="{RED}", penwidth=2' in line and ORANGE not in line
    assert 'label="8080\\n2 failed (5 opened)\\np99 480 ms"' in line


def test_what_counts_as_slow_is_the_callers_threshold() -> None:
    health = round_trips(120, opened=1)
    assert ORANGE not in drawn(health)  # under the 200 ms default
    assert ORANGE in drawn(health, slow_ms=100)


def test_an_expired_call_whose_last_calls_were_slow_stays_orange() -> None:
    line = drawn(round_trips(300, opened=1), event="expired")
    assert "style=dashed" in line and "#aaaaaa" not in line and ORANGE in line


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")
def test_the_svg_draws_the_slow_call_orange() -> None:
    slow = msgspec.structs.replace(CALL, health=round_trips(2, 240, opened=2))
    svg = render_graph(render_dot([slow]), "svg").decode()
    assert re.search(f'<path [^>]*stroke="{ORANGE}"', svg)
    assert "p99 240 ms" in svg


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")
def test_the_svg_draws_the_failing_call_red() -> None:
    failing = msgspec.structs.replace(CALL, health=FlowHealth(opened=12, failed=3))
    svg = render_graph(render_dot([failing]), "svg").decode()
    assert re.search(f'<path [^>]*stroke="{RED}"', svg)
    assert "3 failed (12 opened)" in svg
