"""Conntrack events in, the calls of a flush window out: TCP answered, UDP sent.

What a call becomes, when a flow counts as answered, what is left out, how a
window folds, the bounds, and how a socket scan's client learns its backend.
Events are real ``ctnetlink`` messages (:mod:`helpers.ctevents`).
"""

from __future__ import annotations

import socket

import msgspec
import pytest
from helpers.ctevents import (
    ANSWERED,
    BACKEND,
    CLIENT,
    DYING,
    ESTABLISHED,
    FROM_BACKEND,
    NETNS,
    OTHER_BACKEND,
    SERVICE,
    SYN_SENT,
    VIA_SERVICE,
    Endpoints,
    balanced,
    connection,
    event,
    feed,
    socket_seen,
    tracker,
)

from callmap.wire import FlowHealth, SocketObservation
from capture.ctevent import DROP_OTHER_PROTOCOL
from capture.ctflows import (
    DROP_ANSWERED_BEFORE,
    DROP_AWAITING_ANSWER,
    DROP_DNS_LOOKUP,
    DROP_ENDED_UNSEEN,
    DROP_FLOW_EVICTED,
    DROP_FOLDED,
    DROP_LOOPBACK,
    DROP_NAT_EVICTED,
    DROP_QUEUE_OVERFLOW,
    DROP_UDP_NOT_FOLLOWED,
    DROP_UNANSWERED,
)

UDP = socket.IPPROTO_UDP

# --- what a call becomes ---------------------------------------------------------


def test_an_answered_call_through_nat_names_the_client_the_backend_and_what_was_dialled() -> None:
    t, stage = tracker()
    t.add_datagram(event("new", VIA_SERVICE, FROM_BACKEND, status=SYN_SENT), 100.0)
    t.add_datagram(event("update", VIA_SERVICE, FROM_BACKEND, status=ANSWERED), 100.5)
    (record,) = t.flush(now=105.0)
    assert record == SocketObservation(
        cluster="c",
        node="node-a",
        ts=105.0,
        netns=NETNS,
        pod_uid=None,
        local_ip=CLIENT,
        local_port=40001,
        remote_ip=BACKEND,
        remote_port=8080,
        role="client",
        first_seen=100.0,
        origin="conntrack",
        dialled_ip=SERVICE,
        dialled_port=80,
        health=FlowHealth(opened=1),
    )
    assert stage.emitted == 1 and balanced(stage)


def test_a_direct_call_has_nothing_dialled() -> None:
    t, _ = tracker()
    feed(t, connection((CLIENT, 40001, BACKEND, 8080), FROM_BACKEND))
    (record,) = t.flush(now=101.0)
    assert (record.remote_ip, record.remote_port) == (BACKEND, 8080)
    assert (record.dialled_ip, record.dialled_port) == (None, None)


def test_nat_that_changes_only_the_port_names_what_was_dialled_too() -> None:
    t, _ = tracker()
    feed(t, connection((CLIENT, 40001, BACKEND, 80), FROM_BACKEND))
    (record,) = t.flush(now=101.0)
    assert (record.remote_ip, record.remote_port) == (BACKEND, 8080)
    assert (record.dialled_ip, record.dialled_port) == (BACKEND, 80)


def test_source_nat_does_not_change_who_called() -> None:
    masqueraded = (BACKEND, 8080, "192.168.0.1", 61000)  # the reply goes to the node
    t, _ = tracker()
    feed(t, connection(VIA_SERVICE, masqueraded))
    (record,) = t.flush(now=101.0)
    assert (record.local_ip, record.local_port) == (CLIENT, 40001)
    assert (record.remote_ip, record.dialled_ip) == (BACKEND, SERVICE)


def test_ipv6_calls_are_calls_too_in_canonical_form() -> None:
    orig = ("fd00:1:0:0::10", 40001, "fd00:96::a", 80)
    reply = ("fd00:2::0:20", 8080, "fd00:1::10", 40001)
    t, _ = tracker()
    feed(t, connection(orig, reply))
    (record,) = t.flush(now=101.0)
    assert (record.local_ip, record.remote_ip, record.dialled_ip) == (
        "fd00:1::10",
        "fd00:2::20",
        "fd00:96::a",
    )


# --- answered or not ----------------------------------------------------------------


def test_nothing_is_a_call_until_the_other_side_answers() -> None:
    t, stage = tracker()
    t.add_datagram(event("new", VIA_SERVICE, FROM_BACKEND, status=SYN_SENT), 100.0)
    assert t.flush(now=101.0) == []
    assert stage.dropped == {DROP_AWAITING_ANSWER: 1}
    t.add_datagram(event("update", VIA_SERVICE, FROM_BACKEND, status=ANSWERED), 102.0)
    (record,) = t.flush(now=103.0)
    assert record.first_seen == 100.0  # when the flow was first seen, not answered
    assert balanced(stage)


def test_a_flow_destroyed_unanswered_is_a_failed_connect_never_a_call() -> None:
    refused = (CLIENT, 40002, BACKEND, 9999)
    t, stage = tracker()
    t.add_datagram(event("new", refused, status=SYN_SENT), 100.0)
    t.add_datagram(event("destroy", refused, status=SYN_SENT | DYING), 100.01)
    (record,) = t.flush(now=101.0)
    assert record.health == FlowHealth(failed=1)  # opened nothing: health only
    assert (record.remote_ip, record.remote_port, record.first_seen) == (BACKEND, 9999, 100.0)
    assert stage.dropped == {DROP_AWAITING_ANSWER: 1}
    assert t.flows == 0 and balanced(stage)


def test_an_unanswered_flow_never_seen_alive_is_only_counted() -> None:
    t, stage = tracker()
    t.add_datagram(event("destroy", (CLIENT, 40002, BACKEND, 9999), status=SYN_SENT | DYING), 1.0)
    assert t.flush(now=2.0) == []
    assert stage.dropped == {DROP_UNANSWERED: 1} and balanced(stage)


def test_a_flow_is_reported_once_however_many_events_follow() -> None:
    t, stage = tracker()
    feed(t, connection())
    assert len(t.flush(now=101.0)) == 1
    feed(t, [event("update", VIA_SERVICE, FROM_BACKEND, status=ESTABLISHED)], now=110.0)
    feed(t, [event("destroy", VIA_SERVICE, FROM_BACKEND, status=ESTABLISHED | DYING)], now=230.0)
    (end,) = t.flush(now=231.0)
    assert end.health == FlowHealth(closed=1)  # its end: health, no second call
    assert (end.first_seen, end.local_port) == (100.0, 40001)
    assert stage.dropped[DROP_ANSWERED_BEFORE] == 2  # established twice
    assert (t.flows, t.nat_flows) == (0, 0) and balanced(stage)


def test_an_answered_flow_first_heard_of_at_its_end_is_not_reported() -> None:
    """Connections older than the agent (or whose events the kernel dropped) end with a
    DESTROY up to two minutes after the call (TIME_WAIT): their addresses may name other
    pods by then, so the tracker does not guess."""
    t, stage = tracker()
    t.add_datagram(event("destroy", VIA_SERVICE, FROM_BACKEND, status=ESTABLISHED | DYING), 300.0)
    assert t.flush(now=301.0) == []
    assert stage.dropped["ended_unseen"] == 1
    assert t.flows == 0 and t.nat_flows == 0  # destroyed: nothing kept
    assert balanced(stage)


def test_a_flow_seen_alive_whose_answer_was_lost_is_reported_at_its_end() -> None:
    t, stage = tracker()
    feed(t, [event("new", VIA_SERVICE, FROM_BACKEND, status=SYN_SENT)], now=100.0)
    destroy = event("destroy", VIA_SERVICE, FROM_BACKEND, status=ESTABLISHED | DYING)
    feed(t, [destroy], now=220.0)  # the UPDATEs in between were lost
    (record,) = t.flush(now=221.0)
    assert (record.remote_ip, record.first_seen) == (BACKEND, 100.0)  # when it was alive
    assert balanced(stage)


def test_an_answered_flow_first_heard_of_while_alive_is_reported_once() -> None:
    """A connection older than the agent still changes state while it lives (its close):
    then its addresses are still its pods'."""
    t, stage = tracker()
    t.add_datagram(event("update", VIA_SERVICE, FROM_BACKEND, status=ESTABLISHED), 300.0)
    (record,) = t.flush(now=301.0)
    assert (record.remote_ip, record.first_seen, record.dialled_ip) == (BACKEND, 300.0, SERVICE)
    assert balanced(stage)


def test_a_new_flow_on_a_reused_tuple_is_a_new_call() -> None:
    t, _ = tracker()
    feed(t, connection(ct_id=1))
    feed(t, [event("destroy", VIA_SERVICE, FROM_BACKEND, status=ESTABLISHED | DYING, ct_id=1)])
    assert len(t.flush(now=101.0)) == 1
    feed(t, connection(ct_id=2), now=200.0)
    (again,) = t.flush(now=201.0)
    assert again.first_seen == 200.0


# --- what is left out ---------------------------------------------------------------


@pytest.mark.parametrize("proto", [socket.IPPROTO_ICMP, 132])
def test_other_protocols_are_counted_and_skipped(proto: int) -> None:
    orig = (CLIENT, 5353, "10.96.0.53", 8125)
    t, stage = tracker(udp=True)
    t.add_datagram(event("new", orig, proto=proto), 100.0)
    t.add_datagram(event("update", orig, proto=proto), 100.1)
    assert t.flush(now=101.0) == []
    assert stage.dropped == {DROP_OTHER_PROTOCOL: 2} and balanced(stage)


def test_udp_is_counted_and_skipped_unless_followed() -> None:
    t, stage = tracker()
    t.add_datagram(event("new", VIA_SERVICE, FROM_BACKEND, status=0, proto=UDP), 100.0)
    assert t.flush(now=101.0) == []
    assert stage.dropped == {DROP_UDP_NOT_FOLLOWED: 1} and balanced(stage)


# --- UDP ---------------------------------------------------------------------------


def test_a_udp_flow_is_a_call_at_its_first_event_answered_or_not() -> None:
    t, stage = tracker(udp=True)
    t.add_datagram(event("new", VIA_SERVICE, FROM_BACKEND, status=0, proto=UDP), 100.0)
    t.add_datagram(event("update", VIA_SERVICE, FROM_BACKEND, status=ANSWERED, proto=UDP), 100.2)
    (record,) = t.flush(now=101.0)
    assert (record.transport, record.local_ip, record.local_port) == ("udp", CLIENT, 40001)
    assert (record.remote_ip, record.remote_port) == (BACKEND, 8080)
    assert (record.dialled_ip, record.dialled_port, record.first_seen) == (SERVICE, 80, 100.0)
    assert record.health == FlowHealth(opened=1)
    t.add_datagram(event("destroy", VIA_SERVICE, FROM_BACKEND, status=ANSWERED, proto=UDP), 140.0)
    (end,) = t.flush(now=141.0)
    assert end.health == FlowHealth(closed=1)
    assert stage.dropped == {DROP_ANSWERED_BEFORE: 1} and balanced(stage)


def test_udp_and_tcp_between_the_same_ends_are_two_records() -> None:
    t, _ = tracker(udp=True)
    feed(t, connection(ct_id=1))
    t.add_datagram(event("new", VIA_SERVICE, FROM_BACKEND, status=0, proto=UDP, ct_id=2), 100.0)
    records = t.flush(now=101.0)
    assert sorted(r.transport for r in records) == ["tcp", "udp"]
    assert {(r.remote_ip, r.remote_port, r.dialled_ip) for r in records} == {
        (BACKEND, 8080, SERVICE)
    }


@pytest.mark.parametrize(
    ("orig", "reply"),
    [
        ((CLIENT, 40001, SERVICE, 53), (BACKEND, 53, CLIENT, 40001)),
        ((CLIENT, 40001, SERVICE, 53), (BACKEND, 5353, CLIENT, 40001)),
        ((CLIENT, 40001, BACKEND, 53), None),
    ],
    ids=["via-service", "dns-pod-on-another-port", "direct"],
)
def test_a_udp_flow_to_port_53_is_a_dns_lookup_not_a_call(
    orig: Endpoints, reply: Endpoints | None
) -> None:
    t, stage = tracker(udp=True)
    t.add_datagram(event("new", orig, reply, status=0, proto=UDP), 100.0)
    assert t.flush(now=101.0) == []
    assert stage.dropped == {DROP_DNS_LOOKUP: 1} and balanced(stage)


def test_the_destroy_of_a_udp_flow_never_seen_alive_is_not_a_call() -> None:
    t, stage = tracker(udp=True)
    t.add_datagram(event("destroy", VIA_SERVICE, FROM_BACKEND, status=0, proto=UDP), 130.0)
    assert t.flush(now=131.0) == []
    assert stage.dropped == {DROP_ENDED_UNSEEN: 1} and balanced(stage)


@pytest.mark.parametrize(
    "orig",
    [("127.0.0.1", 40000, "127.0.0.1", 6443), ("::1", 40000, "::1", 8080)],
    ids=["v4", "v6"],
)
def test_loopback_flows_are_counted_and_skipped(orig: Endpoints) -> None:
    t, stage = tracker()
    feed(t, connection(orig, (orig[2], orig[3], orig[0], orig[1])))
    assert t.flush(now=101.0) == []
    assert stage.dropped == {DROP_LOOPBACK: 3} and t.flows == 0 and balanced(stage)


# --- one window ---------------------------------------------------------------------


def test_calls_of_one_window_fold_into_one_record_per_client_backend_and_dialled() -> None:
    t, stage = tracker()
    feed(t, connection((CLIENT, 40003, SERVICE, 80), (BACKEND, 8080, CLIENT, 40003), 3), 100.3)
    feed(t, connection((CLIENT, 40001, SERVICE, 80), (BACKEND, 8080, CLIENT, 40001), 1), 100.1)
    feed(t, connection((CLIENT, 40002, BACKEND, 8080), (BACKEND, 8080, CLIENT, 40002), 2), 100.2)
    via_service, direct = t.flush(now=105.0)
    assert (via_service.local_port, via_service.first_seen) == (40003, 100.1)
    assert via_service.dialled_ip == SERVICE and direct.dialled_ip is None
    assert stage.dropped[DROP_FOLDED] == 1 and stage.emitted == 2 and balanced(stage)
    feed(t, connection((CLIENT, 40004, SERVICE, 80), (BACKEND, 8080, CLIENT, 40004), 4), 106.0)
    (next_window,) = t.flush(now=110.0)
    assert (next_window.ts, next_window.first_seen) == (110.0, 106.0)


def test_another_backend_behind_the_same_service_is_another_record() -> None:
    t, _ = tracker()
    feed(t, connection((CLIENT, 40001, SERVICE, 80), (BACKEND, 8080, CLIENT, 40001), 1))
    feed(t, connection((CLIENT, 40002, SERVICE, 80), (OTHER_BACKEND, 8080, CLIENT, 40002), 2))
    assert {r.remote_ip for r in t.flush(now=101.0)} == {BACKEND, OTHER_BACKEND}


# --- bounded memory and losses ------------------------------------------------------


def test_flows_beyond_the_bound_forget_the_oldest_and_count_it() -> None:
    t, stage = tracker(max_flows=2)
    for port in (40001, 40002, 40003):
        t.add_datagram(event("new", (CLIENT, port, BACKEND, 8080), status=SYN_SENT), 100.0)
    assert t.flows == 2 and stage.dropped[DROP_FLOW_EVICTED] == 1 and balanced(stage)


def test_nat_flows_beyond_the_bound_forget_the_oldest_and_count_it() -> None:
    t, stage = tracker(max_nat=1)
    feed(t, connection((CLIENT, 40001, SERVICE, 80), (BACKEND, 8080, CLIENT, 40001), 1))
    feed(t, connection((CLIENT, 40002, SERVICE, 80), (BACKEND, 8080, CLIENT, 40002), 2))
    assert len(t.flush(now=101.0)) == 1
    assert t.nat_flows == 1 and stage.dropped[DROP_NAT_EVICTED] == 1 and balanced(stage)
    first, second = socket_seen(), msgspec.structs.replace(socket_seen(), local_port=40002)
    kept = t.rewrite([first, second])
    assert kept[0] == first and kept[1].remote_ip == BACKEND  # the oldest went


def test_a_lost_burst_of_events_is_counted() -> None:
    t, stage = tracker()
    t.count_lost(DROP_QUEUE_OVERFLOW)
    assert stage.dropped == {DROP_QUEUE_OVERFLOW: 1} and balanced(stage)


# --- naming the backend of a socket-table observation -------------------------------


def test_a_socket_scan_client_of_a_live_nat_flow_learns_its_backend() -> None:
    t, _ = tracker()
    feed(t, connection())
    (rewritten,) = t.rewrite([socket_seen()])
    assert rewritten == msgspec.structs.replace(
        socket_seen(), remote_ip=BACKEND, remote_port=8080, dialled_ip=SERVICE, dialled_port=80
    )


def test_rewrite_leaves_alone_what_is_not_a_live_nat_client() -> None:
    t, _ = tracker()
    feed(t, connection())
    feed(t, connection((CLIENT, 40009, BACKEND, 8080), (BACKEND, 8080, CLIENT, 40009), 9))
    untouched = [
        socket_seen(role="server"),  # the same tuple seen from a server side is not this flow
        socket_seen(origin="conntrack"),
        socket_seen(remote=(SERVICE, 443)),  # another flow
        msgspec.structs.replace(socket_seen(remote=(BACKEND, 8080)), local_port=40009),  # no NAT
    ]
    assert t.rewrite(untouched) == untouched


def test_once_its_flow_is_destroyed_a_socket_is_not_rewritten() -> None:
    t, _ = tracker()
    feed(t, connection())
    feed(t, [event("destroy", VIA_SERVICE, FROM_BACKEND, status=ESTABLISHED | DYING)])
    assert t.rewrite([socket_seen()]) == [socket_seen()]


def test_an_unanswered_nat_flow_names_no_backend() -> None:
    t, _ = tracker()
    feed(t, [event("new", VIA_SERVICE, FROM_BACKEND, status=SYN_SENT)])
    assert t.rewrite([socket_seen()]) == [socket_seen()]


# --- how the calls went --------------------------------------------------------------

TIME_WAIT, CLOSE = 7, 8  # the kernel's TCP conntrack states


def test_a_connection_closed_in_order_counts_at_its_time_wait_and_its_bytes_at_its_end() -> None:
    t, stage = tracker()
    feed(t, connection())
    (call,) = t.flush(now=101.0)
    assert call.health == FlowHealth(opened=1)
    ending = event("update", VIA_SERVICE, FROM_BACKEND, status=ESTABLISHED, tcp_state=TIME_WAIT)
    feed(t, [ending], now=102.0)
    (closed,) = t.flush(now=103.0)
    assert closed.health == FlowHealth(closed=1)  # two minutes before its DESTROY
    gone = event(
        "destroy", VIA_SERVICE, FROM_BACKEND, status=ESTABLISHED | DYING, counted=(370, 1268)
    )
    feed(t, [gone], now=222.0)
    (counted,) = t.flush(now=223.0)
    assert counted.health == FlowHealth(bytes_sent=370, bytes_received=1268)  # closed once
    assert counted.first_seen == 100.0 and balanced(stage)


def test_a_reset_ends_a_connection_and_counts_as_one() -> None:
    t, _ = tracker()
    reset = event("update", VIA_SERVICE, FROM_BACKEND, status=ESTABLISHED, tcp_state=CLOSE)
    feed(t, [*connection(), reset])
    (record,) = t.flush(now=101.0)
    assert record.health == FlowHealth(opened=1, closed=1, resets=1)
    feed(t, [event("destroy", VIA_SERVICE, FROM_BACKEND, status=ESTABLISHED | DYING)], 111.0)
    (end,) = t.flush(now=112.0)
    assert end.health == FlowHealth()  # nothing more to tell: no bytes counted here


def test_one_window_sums_the_health_of_its_flows_per_call() -> None:
    t, stage = tracker()
    for ct_id, port in ((1, 40001), (2, 40002)):
        orig, reply = (CLIENT, port, SERVICE, 80), (BACKEND, 8080, CLIENT, port)
        feed(t, connection(orig, reply, ct_id=ct_id))
        end = event(
            "destroy", orig, reply, status=ESTABLISHED | DYING, ct_id=ct_id, counted=(100, 200)
        )
        feed(t, [end], now=100.5)
    refused = ((CLIENT, 40003, SERVICE, 80), (BACKEND, 8080, CLIENT, 40003))
    feed(t, [event("new", *refused, status=SYN_SENT, ct_id=3)])
    feed(t, [event("destroy", *refused, status=SYN_SENT | DYING, ct_id=3, counted=(60, 40))])
    (record,) = t.flush(now=101.0)
    assert record.health == FlowHealth(
        opened=2, closed=2, failed=1, bytes_sent=200, bytes_received=400
    )  # the refused connect's SYN and reset are no bytes of a call
    assert (record.local_port, record.dialled_ip) == (40001, SERVICE)
    assert stage.emitted == 1 and balanced(stage)


def test_a_udp_flow_ends_at_its_destroy_with_its_bytes() -> None:
    t, _ = tracker(udp=True)
    feed(t, [event("new", VIA_SERVICE, FROM_BACKEND, status=0, proto=UDP)])
    gone = event("destroy", VIA_SERVICE, FROM_BACKEND, status=DYING, proto=UDP, counted=(5, 0))
    feed(t, [gone], now=131.0)
    (record,) = t.flush(now=132.0)
    assert record.health == FlowHealth(opened=1, closed=1, bytes_sent=5, bytes_received=0)
