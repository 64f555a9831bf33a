"""How health adds up: the one rule the stream, the hub and every output share."""

from __future__ import annotations

import msgspec

from callmap.wire import FlowHealth, RttSamples, SocketObservation, decode_as, total_health
from callmap.wire.health import rtt_bucket


def test_counts_add_and_bytes_add_where_known() -> None:
    lately = FlowHealth(opened=2, failed=1, bytes_sent=10)
    assert lately.plus(FlowHealth(closed=2, resets=1, bytes_received=7)) == FlowHealth(
        opened=2, closed=2, failed=1, resets=1, bytes_sent=10, bytes_received=7
    )
    assert FlowHealth().plus(FlowHealth()).bytes_sent is None  # unknown stays unknown


def test_a_total_of_nothing_known_is_none() -> None:
    assert total_health([None, FlowHealth(opened=1), None, FlowHealth(failed=2)]) == (
        FlowHealth(opened=1, failed=2)
    )
    assert total_health([None, None]) is None and total_health([]) is None


def test_health_leaves_zeros_out_on_the_wire_and_older_records_have_none() -> None:
    assert msgspec.json.encode(FlowHealth(failed=3)) == b'{"failed":3}'
    older = (
        b'{"v":1,"cluster":"c","node":"n","ts":1.0,"netns":1,"local_ip":"10.0.0.1",'
        b'"local_port":1,"remote_ip":"10.0.0.2","remote_port":2,"role":"client",'
        b'"first_seen":1.0}'
    )
    assert decode_as(SocketObservation, older, topic="t").health is None


def test_round_trip_times_add_up_bucket_by_bucket() -> None:
    lately = FlowHealth(retransmits=2, rtt=RttSamples.of(1000, 1000))
    total = lately.plus(FlowHealth(opened=1, retransmits=1, rtt=RttSamples.of(40_000)))
    assert total.retransmits == 3 and total.opened == 1
    assert total.rtt == RttSamples.of(1000, 1000, 40_000)
    assert total.rtt.samples == 3 and total.rtt.sum_us == 42_000
    # one side without RTT keeps the other's
    assert FlowHealth(opened=1).plus(lately).rtt == lately.rtt
    assert lately.plus(FlowHealth(opened=1)).rtt == lately.rtt


def test_an_rtt_falls_in_the_quarter_octave_that_holds_it() -> None:
    for rtt in (1, 2, 3, 999, 1000, 1024, 1414, 1415, 250_000, 60_000_000):
        k = rtt_bucket(rtt)
        assert 2 ** (k / 4) <= rtt < 2 ** ((k + 1) / 4), rtt
    assert rtt_bucket(0) == 0


def test_quantiles_are_within_nine_percent_of_the_sample_at_their_rank() -> None:
    rtts = [200 + 37 * n for n in range(100)]  # 200 µs .. 3863 µs
    samples = RttSamples.of(*rtts)
    for q, truth in ((0.5, rtts[49]), (0.99, rtts[98]), (1.0, rtts[99])):
        assert abs(samples.quantile_us(q) - truth) / truth < 0.095, (q, truth)
    assert RttSamples.of().quantile_us(0.5) == 0.0


def test_rtt_on_the_wire_is_readable_json() -> None:
    health = FlowHealth(retransmits=1, rtt=RttSamples.of(1000, 1000, 2000))
    assert msgspec.json.encode(health) == (
        b'{"retransmits":1,"rtt":{"samples":3,"sum_us":4000,"buckets":[[39,2],[43,1]]}}'
    )
    assert msgspec.json.decode(msgspec.json.encode(health), type=FlowHealth) == health
