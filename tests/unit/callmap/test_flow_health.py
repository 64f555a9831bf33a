"""How health adds up: the one rule the stream, the hub and every output share."""

from __future__ import annotations

import msgspec

from callmap.wire import FlowHealth, SocketObservation, decode_as, total_health


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
