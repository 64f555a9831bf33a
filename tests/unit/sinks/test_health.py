"""The words and the rules every output uses for an edge's health."""

from __future__ import annotations

from callmap.wire import Edge, Endpoint, FlowHealth, RttSamples
from sinks.health import (
    SLOW_MS,
    describe,
    failing,
    health_fields,
    health_summary,
    milliseconds,
    rtt_fields,
    rtt_of,
    size,
    slow,
)

MS = 1000
"""µs in a millisecond: RTTs are given in µs."""


def rtts(*ms: float) -> RttSamples:
    return RttSamples.of(*(round(value * MS) for value in ms))


def with_rtt(*ms: float, retransmits: int = 0) -> FlowHealth:
    return FlowHealth(opened=len(ms), rtt=rtts(*ms), retransmits=retransmits)


def test_a_call_is_failing_when_connects_failed_or_connections_were_reset() -> None:
    assert failing(FlowHealth(opened=9, failed=1))
    assert failing(FlowHealth(opened=9, closed=9, resets=1))
    assert not failing(FlowHealth(opened=9, closed=9, bytes_sent=10))
    assert not failing(None)  # nothing reported is not failing


def test_failures_come_first_and_nothing_zero_or_unknown_is_said() -> None:
    health = FlowHealth(opened=12, closed=11, failed=3, resets=1, bytes_sent=48210)
    assert describe(health) == "3 failed, 1 reset, 12 opened, 11 closed, 48.2 kB sent"
    assert describe(FlowHealth(resets=2)) == "2 resets"
    assert describe(FlowHealth(bytes_sent=0, bytes_received=0)) == "0 B sent, 0 B received"
    assert describe(FlowHealth()) == "no connections ended or opened"
    assert describe(None) == "no health reported"


def test_sizes_are_si_with_three_significant_digits() -> None:
    assert [size(n) for n in (0, 999, 1000, 48210, 1_520_000, 17_800_000_000)] == [
        "0 B",
        "999 B",
        "1 kB",
        "48.2 kB",
        "1.52 MB",
        "17.8 GB",
    ]


def test_a_call_is_slow_when_its_p99_round_trip_reaches_200_ms() -> None:
    assert SLOW_MS == 200
    assert slow(with_rtt(*[1.0] * 98, 300.0, 300.0))  # 2 of 100: the p99 is one of them
    assert not slow(with_rtt(*[1.0] * 99, 300.0))  # 1 of 100: the p99 is not
    assert slow(with_rtt(400.0)) and not slow(with_rtt(150.0))
    assert not slow(FlowHealth(opened=9, failed=9))  # no round trips measured: never slow
    assert not slow(FlowHealth(rtt=RttSamples(samples=0, sum_us=0, buckets=())))
    assert not slow(None)


def test_the_slow_threshold_is_the_callers_and_counts_at_its_value() -> None:
    health = with_rtt(300.0)
    p99_ms = health.rtt.quantile_us(0.99) / MS  # type: ignore[union-attr]
    assert slow(health, slow_ms=p99_ms)  # at the threshold is slow
    assert not slow(health, slow_ms=p99_ms + 0.001)
    assert slow(with_rtt(60.0), slow_ms=50) and not slow(with_rtt(60.0))


def test_slow_and_failing_are_separate_facts() -> None:
    both = FlowHealth(opened=3, failed=1, rtt=rtts(500.0))
    assert failing(both) and slow(both)
    assert not failing(with_rtt(500.0)) and not slow(FlowHealth(failed=1))


def test_round_trips_are_told_as_p50_and_p99_after_the_counts() -> None:
    health = FlowHealth(opened=40, closed=40, retransmits=6, rtt=rtts(*[1.1] * 37, 240, 240, 240))
    assert describe(health) == "40 opened, 40 closed, RTT p50 1.1 ms, p99 240 ms, 6 retransmits"
    assert describe(FlowHealth(retransmits=1)) == "1 retransmit"
    assert describe(with_rtt(0.049)) == "1 opened, RTT p50 0.049 ms, p99 0.049 ms"  # none resent
    failed = FlowHealth(opened=2, failed=3, rtt=rtts(3.8, 3.8))
    assert describe(failed) == "3 failed, 2 opened, RTT p50 3.8 ms, p99 3.8 ms"  # failures first


def test_milliseconds_keep_two_significant_digits_and_never_an_exponent() -> None:
    assert [milliseconds(us) for us in (12, 420, 4_234, 42_345, 99_400, 99_600, 213_000)] == [
        "0.012 ms",
        "0.42 ms",
        "4.2 ms",
        "42 ms",
        "99 ms",
        "100 ms",
        "210 ms",
    ]
    assert milliseconds(1_340_000) == "1300 ms"  # one unit for every RTT: easy to compare


def test_rtt_fields_are_there_only_when_known() -> None:
    health = FlowHealth(opened=2, rtt=rtts(1.0, 3.0), retransmits=0)
    fields = rtt_fields(health)
    assert set(fields) == {"rtt_p50_ms", "rtt_p99_ms", "rtt_mean_ms", "retransmits"}
    assert fields["rtt_mean_ms"] == 2.0 and fields["retransmits"] == 0  # 0 is known beside RTT
    assert fields["rtt_p50_ms"] == round(health.rtt.quantile_us(0.5) / MS, 3)  # type: ignore[union-attr]
    assert 0.9 < fields["rtt_p50_ms"] < 1.1 and 2.7 < fields["rtt_p99_ms"] < 3.3  # buckets: 9 %
    assert rtt_fields(FlowHealth(opened=5)) == {}  # conntrack alone: 0 retransmits means nothing
    assert rtt_fields(FlowHealth(retransmits=4)) == {"retransmits": 4}
    assert rtt_fields(None) == {}


def test_round_trips_no_socket_could_report_are_unknown_rather_than_an_overflow() -> None:
    longest = FlowHealth(rtt=RttSamples.of(2**32 - 1))  # tcpi_rtt is 32 bits of µs
    assert rtt_of(longest) is longest.rtt and slow(longest)
    for hostile in (
        RttSamples(samples=1, sum_us=1_000, buckets=((10**6, 1),)),  # 2^250000 µs: no float
        RttSamples(samples=1, sum_us=10**400, buckets=((40, 1),)),  # a mean past any float
        RttSamples(samples=1, sum_us=-1_000, buckets=((40, 1),)),
        RttSamples(samples=1, sum_us=1_000, buckets=((-8, 1),)),
    ):
        health = FlowHealth(opened=1, retransmits=2, rtt=hostile)
        assert rtt_of(health) is None and not slow(health)
        assert rtt_fields(health) == {"retransmits": 2}
        assert describe(health) == "1 opened, 2 retransmits"


def test_a_summary_for_search_indexes_has_flat_rtt_numbers_instead_of_buckets() -> None:
    health = FlowHealth(opened=2, failed=1, rtt=rtts(1.0, 3.0), retransmits=2)
    summary = health_summary(health)
    assert "rtt" not in summary and summary["rtt_samples"] == 2
    assert summary["rtt_mean_ms"] == 2.0 and summary["retransmits"] == 2
    assert (summary["opened"], summary["failed"]) == (2, 1)
    assert health_summary(FlowHealth(opened=1, bytes_sent=9)) == {"opened": 1, "bytes_sent": 9}


def test_json_outputs_carry_slow_and_the_windows_rtt_beside_failing() -> None:
    edge = Edge(
        edge_id="e1",
        event="refresh",
        cluster="prod",
        client=Endpoint(type="workload", namespace="shop", name="web", kind="Deployment"),
        server=Endpoint(type="workload", namespace="shop", name="api", kind="Deployment"),
        first_seen=1.0,
        last_seen=2.0,
        health=with_rtt(250.0, retransmits=3),
        health_total=with_rtt(1.0, 250.0, retransmits=5),
    )
    fields = health_fields(edge)
    assert (fields["failing"], fields["slow"], fields["retransmits"]) == (False, True, 3)
    assert fields["rtt_p99_ms"] == fields["rtt_p50_ms"]  # of the window: one sample
    assert fields["health"]["rtt"]["samples"] == 1  # the wire's own form, buckets and all
    assert health_fields(edge, slow_ms=300)["slow"] is False
    conntrack_only = health_fields(Edge(**{**edge_fields(edge), "health": FlowHealth(opened=1)}))
    assert conntrack_only["slow"] is False and "rtt_p50_ms" not in conntrack_only
    assert "retransmits" not in conntrack_only


def edge_fields(edge: Edge) -> dict[str, object]:
    return {name: getattr(edge, name) for name in edge.__struct_fields__}
