"""Repeated records known by their bytes: the same sightings as decoding them, for less."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.streamrecords import CLUSTER, answer, pod, service, socket
from hypothesis import given, settings
from hypothesis import strategies as st

import streams.resolvestage
from callmap.counters import Counters
from callmap.errors import WireDecodeError
from callmap.wire import (
    DNS,
    PODS,
    SERVICES,
    SOCKETS,
    DnsAnswer,
    DnsAnswerBatch,
    EdgeSighting,
    SocketBatch,
    SocketObservation,
    encode,
    message_key,
)
from streams.caps import Oversized
from streams.repeats import AVAILABLE, Repeats, head_of
from streams.resolvestage import Identities, ResolveSettings, ResolveStage

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="the C table is not built")

CART = "cart.shop.svc.cluster.local"


def stage(*, repeats: bool = True, max_records: int = 1000) -> ResolveStage:
    counters = Counters()
    settings = ResolveSettings(grace=60)
    identities = Identities(settings, counters)
    return ResolveStage(identities, settings, counters, repeats=repeats, max_records=max_records)


def put(stages: list[ResolveStage], record: Any) -> None:
    topic = PODS.name if record.__class__.__name__ == "PodIdentity" else SERVICES.name
    for one in stages:
        one._identities.apply(topic, message_key(record) or b"", encode(record))


def dns_message(*answers: DnsAnswer) -> bytes:
    return encode(DnsAnswerBatch(cluster=CLUSTER, node="node-a", records=answers))


def socket_message(*observations: SocketObservation) -> bytes:
    return encode(SocketBatch(cluster=CLUSTER, node="node-a", records=observations))


def shop(stages: list[ResolveStage]) -> None:
    put(stages, pod("frontend-0", "10.1.0.10", uid="f", workload="frontend"))
    put(stages, pod("cart-0", "10.1.0.11", uid="c", workload="cart"))
    put(stages, service("cart", "10.96.4.2", "cart"))


def counting_decodes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    decoded: list[bytes] = []
    real = streams.resolvestage.decode

    def decode(spec: Any, value: bytes) -> Any:
        decoded.append(value)
        return real(spec, value)

    monkeypatch.setattr(streams.resolvestage, "decode", decode)
    return decoded


def servers(sightings: list[EdgeSighting]) -> list[tuple[str | None, str | None, int]]:
    return sorted((s.client.name, s.server.name, s.count) for s in sightings)


def test_a_message_of_known_records_is_sighted_without_being_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one = stage()
    shop([one])
    decoded = counting_decodes(monkeypatch)
    first = dns_message(answer(CART, "10.1.0.10", "10.96.4.2", ts=100.0))
    again = dns_message(answer(CART, "10.1.0.10", "10.96.4.2", ts=101.5, count=3))
    (new,), _ = one.message(DNS, first, now=1000.0)
    held, _ = one.message(DNS, again, now=1000.0)
    assert decoded == [first] and new.count == 1 and held == []
    (repeat,) = one.drain()
    assert (repeat.count, repeat.first_seen, repeat.last_seen) == (3, 101.5, 101.5)
    assert one._counters.events["resolved"] == 2


def test_a_known_socket_is_sighted_on_its_port_without_being_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one = stage()
    shop([one])
    decoded = counting_decodes(monkeypatch)
    seen = [
        socket("10.1.0.10", 40000, "10.1.0.11", 7070, pod_uid="f", ts=t, first_seen=90.0)
        for t in (100.0, 101.0)
    ]
    one.message(SOCKETS, socket_message(seen[0]), now=1000.0)
    held, _ = one.message(SOCKETS, socket_message(seen[1]), now=1000.0)
    assert len(decoded) == 1 and held == []
    (repeat,) = one.drain()
    assert (repeat.client.name, repeat.server.name, repeat.ports, repeat.last_seen) == (
        "frontend",
        "cart",
        (7070,),
        101.0,
    )


def test_a_reused_ip_is_resolved_anew_not_from_its_old_key() -> None:
    one = stage()
    shop([one])
    one.message(DNS, dns_message(answer(CART, "10.1.0.10", "10.96.4.2", ts=100.0)), now=1000.0)
    put([one], pod("frontend-0", "10.1.0.10", uid="f", workload="frontend", deleted=150.0))
    put([one], pod("reports-0", "10.1.0.10", uid="r", workload="reports", created=150.0))
    sightings, _ = one.message(
        DNS, dns_message(answer(CART, "10.1.0.10", "10.96.4.2", ts=200.0)), now=1000.0
    )
    assert servers(sightings) == [("reports", "cart", 1)]


def test_a_service_change_forgets_every_known_answer() -> None:
    one = stage()
    shop([one])
    one.message(DNS, dns_message(answer(CART, "10.1.0.10", "10.96.4.2", ts=100.0)), now=1000.0)
    put([one], service("cart", "10.96.4.2", "cart", "cart-canary"))
    sightings, _ = one.message(
        DNS, dns_message(answer(CART, "10.1.0.10", "10.96.4.2", ts=101.0)), now=1000.0
    )
    assert ("frontend", "cart-canary", 1) in servers(sightings)


def test_an_answer_outside_its_clients_holding_is_resolved_at_its_own_time() -> None:
    one = stage()
    put([one], pod("frontend-0", "10.1.0.10", uid="f", workload="frontend", created=100.0))
    put([one], service("cart", "10.96.4.2", "cart"))
    one.message(DNS, dns_message(answer(CART, "10.1.0.10", "10.96.4.2", ts=200.0)), now=1000.0)
    sightings, pending = one.message(
        DNS, dns_message(answer(CART, "10.1.0.10", "10.96.4.2", ts=50.0)), now=1000.0
    )
    assert sightings == [] and pending is not None and len(pending.dns) == 1


@pytest.mark.parametrize(
    "broken",
    [
        b'"ts":"soon"',  # not a number
        b'"ts":1.',  # not a JSON number
        b'"ts":01',
        b'"ts":1e999',  # not finite
        b'"ts":NaN',
    ],
)
def test_a_known_message_with_one_bad_record_is_refused_whole(broken: bytes) -> None:
    one = stage()
    shop([one])
    first = answer(CART, "10.1.0.10", "10.96.4.2", ts=100.0)
    one.message(DNS, dns_message(first, first), now=1000.0)
    one.drain()
    good = dns_message(
        answer(CART, "10.1.0.10", "10.96.4.2", ts=101.0),
        answer(CART, "10.1.0.10", "10.96.4.2", ts=102.0),
    )
    bad = good.replace(b'"ts":102.0', broken)
    assert bad != good
    with pytest.raises(WireDecodeError):
        one.message(DNS, bad, now=1000.0)
    assert one.drain() == []


def test_a_known_message_over_the_record_cap_is_refused() -> None:
    one = stage(max_records=2)
    shop([one])
    record = answer(CART, "10.1.0.10", "10.96.4.2", ts=100.0)
    one.message(DNS, dns_message(record, record), now=1000.0)
    with pytest.raises(Oversized):
        one.message(DNS, dns_message(record, record, record), now=1000.0)


def scanned(repeats: Repeats, value: bytes) -> Any:
    layout = head_of(value)
    assert layout is not None
    return repeats.scan(value, layout[1], layout[2], lambda *_: 1, 0.0, 100)


@pytest.mark.parametrize(
    ("record", "keyed"),
    [
        (b'{"v":1,"ts":5,"q":"a"}', True),
        (b'{"ts":5,"v":1}', True),
        (b'{"v":1,"ts":5,"count":2}', True),
        (b'{"v":1,"ts":5,"ts":6}', False),  # which ts counts is the decoder's business
        (b'{"v":1,"ts":5,"count":2,"count":2}', False),
        (b'{"v":1,"ts":5,"q":"a\\"b"}', False),  # an escape: never keyed
        (b'{"v":1,"ts":5,"count":-1}', False),
        (b'{"v":1,"ts":5,"count":1.0}', False),
        (b'{"v":1,"q":"a"}', False),  # no ts
    ],
)
def test_a_record_is_keyed_only_when_its_values_read_plainly(record: bytes, keyed: bool) -> None:
    repeats = Repeats(100, counted=True)
    value = b'{"v":1,"cluster":"c1","node":"n","records":[' + record + b"]}"
    (miss,) = scanned(repeats, value).misses
    assert (miss.key is not None) is keyed


def test_a_record_key_leaves_out_only_its_time_and_count() -> None:
    repeats = Repeats(100, counted=True)
    value = b'{"v":1,"cluster":"c1","node":"n","records":[{"ts":5.5,"q":"a","count":7}]}'
    (miss,) = scanned(repeats, value).misses
    assert (miss.key, miss.ts, miss.count) == (b'{"ts":,"q":"a","count":}', 5.5, 7)


@pytest.mark.parametrize(
    "records",
    [b'{"ts":1} ,{"ts":2}', b'{"ts":1},', b'[{"ts":1}]', b'{"ts":1', b'{"ts":1}{"ts":2}', b"1"],
)
def test_records_not_laid_out_as_the_encoder_writes_them_are_left_to_the_decoder(
    records: bytes,
) -> None:
    value = b'{"v":1,"cluster":"c1","node":"n","records":[' + records + b"]}"
    assert scanned(Repeats(100, counted=True), value) is None


# --- the same as decoding, whatever happens ------------------------------------------

PODS_AT = ["10.1.0.10", "10.1.0.11", "10.1.0.12"]
SERVICES_AT = ["10.96.4.2", "10.96.4.3"]
Step = tuple[str, Any]

dns_records = st.lists(
    st.tuples(
        st.integers(0, 2),  # client
        st.integers(0, 1),  # service
        st.sampled_from([50.0, 100.0, 100.5, 200.0, 300.0]),  # ts
        st.integers(1, 3),  # count
    ),
    min_size=1,
    max_size=4,
)
socket_records = st.lists(
    st.tuples(
        st.integers(0, 2),  # local pod
        st.integers(0, 2),  # remote pod
        st.sampled_from(["client", "server"]),
        st.sampled_from([100.0, 200.0]),  # ts
        st.sampled_from([90.0, 150.0]),  # first seen
    ),
    min_size=1,
    max_size=4,
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("dns"), dns_records),
        st.tuples(st.just("sockets"), socket_records),
        st.tuples(st.just("pod"), st.tuples(st.integers(0, 2), st.integers(0, 3))),
        st.tuples(st.just("relabel"), st.tuples(st.integers(0, 2), st.integers(0, 3))),
        st.tuples(st.just("service"), st.tuples(st.integers(0, 1), st.integers(0, 2))),
    ),
    min_size=1,
    max_size=25,
)


def build(step: Step, version: dict[int, int], later: float = 0.0) -> tuple[str, Any]:
    """The step's message (its times ``later``), or identity records."""
    kind, what = step
    if kind == "dns":
        return DNS.name, dns_message(
            *(
                answer(
                    f"s{svc}.shop.svc.cluster.local",
                    PODS_AT[client],
                    SERVICES_AT[svc],
                    ts=ts + later,
                    count=count,
                )
                for client, svc, ts, count in what
            )
        )
    if kind == "sockets":
        return SOCKETS.name, socket_message(
            *(
                socket(
                    PODS_AT[local],
                    40000,
                    PODS_AT[remote],
                    8080,
                    role=role,
                    ts=ts + later,
                    first_seen=first_seen,
                    pod_uid=f"p{local}-{version.get(local, 0)}",
                )
                for local, remote, role, ts, first_seen in what
            )
        )
    if kind == "pod":
        index, generation = what
        old = version.get(index, 0)
        version[index] = old + 1
        return "identities", [
            pod(f"w{index}-{old}", PODS_AT[index], uid=f"p{index}-{old}", deleted=150.0),
            pod(
                f"w{index}-{old + 1}",
                PODS_AT[index],
                uid=f"p{index}-{old + 1}",
                workload=f"app{generation}",
                created=150.0,
            ),
        ]
    if kind == "relabel":  # the same pod, now of another workload
        index, generation = what
        now = version.get(index, 0)
        return "identities", [
            pod(
                f"w{index}-{now}",
                PODS_AT[index],
                uid=f"p{index}-{now}",
                workload=f"app{generation}",
                created=150.0 if now else 0.0,
            )
        ]
    index, workloads = what
    return "identities", [
        service(f"s{index}", SERVICES_AT[index], *(f"app{n}" for n in range(workloads + 1)))
    ]


def state(one: ResolveStage) -> list[tuple[Any, ...]]:
    return sorted(
        (s.edge_id, s.count, s.first, s.last, sorted(s.ports), sorted(s.sources), s.urgent)
        for s in one.combiner._slots.values()
    )


@settings(max_examples=150, deadline=None)
@given(steps)
def test_known_records_make_exactly_the_sightings_decoding_makes(plan: list[Step]) -> None:
    fast, slow = stage(), stage(repeats=False)
    both = [fast, slow]
    version: dict[int, int] = {}
    for index in range(3):
        put(both, pod(f"w{index}-0", PODS_AT[index], uid=f"p{index}-0", workload=f"app{index}"))
    for index in range(2):
        put(both, service(f"s{index}", SERVICES_AT[index], f"app{index}"))
    for step in plan:
        kind, message = build(step, version)
        if kind == "identities":
            for record in message:
                put(both, record)
            continue
        spec = DNS if kind == DNS.name else SOCKETS
        for window in range(3):  # each call again in the next windows, as capture sends it
            message = build(step, version, later=0.5 * window)[1]
            results = [one.message(spec, message, now=1000.0 + window) for one in both]
            assert servers(results[0][0]) == servers(results[1][0])
            assert results[0][1] == results[1][1]  # what waits for identities
            assert state(fast) == state(slow)
    assert fast._counters.events == slow._counters.events
    assert servers(fast.drain()) == servers(slow.drain())
