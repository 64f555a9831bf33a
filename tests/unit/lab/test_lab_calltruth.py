"""The netns lab's second truth: the callers' own logs, explained by the plan alone."""

from __future__ import annotations

import pytest
from helpers.labplans import bundled

from lab.addressing import Plan
from lab.calltruth import lab_call_truth
from lab.clustertruth import CallRecord, TrueEdge, parse_call_line
from lab.inventory import PodLife

CHURN = bundled("churn")
PODS = {pod.ref: pod for pod in CHURN.pods}
VICTIM, REPLACEMENT = CHURN.churn[0].victim, CHURN.churn[0].replacement
assert REPLACEMENT is not None
FRONTEND, PROBER = PODS["shop/frontend"].key, PODS["ops/prober"].key
LIVES = [PodLife(pod, 100.0, 200.0 if pod == VICTIM else None) for pod in CHURN.pods]
LIVES.append(PodLife(REPLACEMENT, 200.0))


def call(t: float, pod: str, to: str, addr: str | None, port: int, peer: str | None) -> CallRecord:
    return CallRecord(t=t, pod=pod, to=to, addr=addr, port=port, ok=peer is not None, peer=peer)


def edges(*calls: CallRecord) -> set[TrueEdge]:
    return set(lab_call_truth(CHURN, LIVES, calls, capture_started=50.0).edges)


def test_a_call_by_service_name_is_an_edge_to_the_workloads_the_service_selects() -> None:
    cart = call(150.0, FRONTEND, "cartservice", "10.96.1.1", 7070, f"pong {VICTIM.key}")
    assert edges(cart) == {TrueEdge("shop/frontend", "shop/cartservice", 7070)}


def test_a_call_to_an_address_goes_to_whoever_held_it_then() -> None:
    before = call(150.0, PROBER, "10.244.0.4", "10.244.0.4", 7070, f"pong {VICTIM.key}")
    after = call(250.0, PROBER, "10.244.0.4", "10.244.0.4", 7070, f"pong {REPLACEMENT.key}")
    assert edges(before, after) == {
        TrueEdge("ops/prober", "shop/cartservice", 7070),
        TrueEdge("ops/prober", "shop/emailservice", 7070),
    }


def test_the_internets_answer_makes_an_external_of_the_name_asked() -> None:
    external = call(150.0, FRONTEND, "api.stripe.com", "203.0.113.10", 443, "pong internet")
    assert edges(external) == {TrueEdge("shop/frontend", "external:api.stripe.com", 443)}


def test_a_failed_call_is_tolerated_not_required() -> None:
    failed = call(150.0, FRONTEND, "cartservice", "10.96.1.1", 7070, None)
    truth = lab_call_truth(CHURN, LIVES, [failed], capture_started=50.0)
    assert truth.edges == frozenset()
    assert TrueEdge("shop/frontend", "shop/cartservice", 7070) in truth.tolerated


def test_a_pod_pending_before_it_got_the_address_holds_it_only_from_then() -> None:
    waiting = [*LIVES[:-1], PodLife(REPLACEMENT, 50.0, ips_since=200.0)]
    before = call(150.0, PROBER, "10.244.0.4", "10.244.0.4", 7070, f"pong {VICTIM.key}")
    truth = lab_call_truth(CHURN, waiting, [before], capture_started=50.0)
    assert set(truth.edges) == {TrueEdge("ops/prober", "shop/cartservice", 7070)}


UDP = bundled("udp")
UDP_PODS = {pod.ref: pod for pod in UDP.pods}
UDP_LIVES = [PodLife(pod, 100.0) for pod in UDP.pods]


def udp_edges(layout: Plan, *lines: str) -> tuple[set[TrueEdge], set[TrueEdge]]:
    truth = lab_call_truth(layout, UDP_LIVES, [parse_call_line(x) for x in lines], 50.0)
    return set(truth.edges), set(truth.tolerated)


def test_udp_log_lines_make_udp_edges_and_tcp_lines_tcp_ones() -> None:
    client, statsd = UDP_PODS["web/client"].key, UDP_PODS["metrics/statsd"].key
    tracer = UDP_PODS["web/tracer"].key
    answer = f'"peer": "pong {statsd}"'
    required, tolerated = udp_edges(
        UDP,
        f'{{"t": 150, "pod": "{client}", "to": "statsd.metrics", "addr": "10.96.1.1", '
        f'"port": 8125, "ok": true, {answer}, "protocol": "udp"}}',
        f'{{"t": 151, "pod": "{client}", "to": "statsd.metrics", "addr": "10.96.1.1", '
        f'"port": 9102, "ok": true, {answer}}}',
        f'{{"t": 152, "pod": "{tracer}", "to": "10.244.1.2", "addr": "10.244.1.2", '
        f'"port": 6831, "ok": true, {answer}, "protocol": "udp"}}',
        f'{{"t": 153, "pod": "{client}", "to": "time.example.net", "addr": "203.0.113.123", '
        '"port": 123, "ok": true, "peer": "pong internet", "protocol": "udp"}',
        f'{{"t": 154, "pod": "{tracer}", "to": "10.244.1.2", "addr": "10.244.1.2", '
        '"port": 6832, "ok": false, "peer": null, "protocol": "udp", '
        '"error": "TimeoutError: "}',
    )
    assert required == {
        TrueEdge("web/client", "metrics/statsd", 8125, "udp"),
        TrueEdge("web/client", "metrics/statsd", 9102, "tcp"),
        TrueEdge("web/tracer", "metrics/statsd", 6831, "udp"),
        TrueEdge("web/client", "external:time.example.net", 123, "udp"),
    }
    assert TrueEdge("web/tracer", "metrics/statsd", 6832, "udp") in tolerated  # unanswered


def test_a_log_line_with_a_protocol_of_neither_kind_is_not_a_log_line() -> None:
    line = '{"t": 1, "pod": "a/b", "to": "x", "addr": null, "port": 1, "ok": false, "peer": null'
    assert parse_call_line(line + "}").protocol == "tcp"
    with pytest.raises(ValueError, match="not a call log line"):
        parse_call_line(line + ', "protocol": "sctp"}')
