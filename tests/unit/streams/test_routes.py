"""Remembered resolutions: found again only while what they depend on holds."""

from __future__ import annotations

import msgspec
import pytest
from helpers.streamrecords import CLUSTER, answer, pod, service, socket

from callmap.counters import StageCounters
from callmap.wire import DnsAnswer, FlowHealth, RttSamples, SocketObservation
from streams.combine import Combiner
from streams.identity import IdentityStore
from streams.resolve import Late, Resolver
from streams.routes import Routes

CART = "cart.shop.svc.cluster.local"


@pytest.fixture
def store() -> IdentityStore:
    store = IdentityStore()
    store.put_pod("f", pod("frontend-0", "10.1.0.10", uid="f", workload="frontend"))
    store.put_pod("c", pod("cart-0", "10.1.0.11", uid="c", workload="cart"))
    store.put_service("shop/cart", service("cart", "10.96.4.2", "cart"))
    return store


def routes_of(store: IdentityStore, **options: object) -> tuple[Routes, Resolver, Combiner]:
    resolver = Resolver(store, StageCounters(), **options)  # type: ignore[arg-type]
    combine = Combiner()
    return Routes(CLUSTER, resolver, combine), resolver, combine


def names(routes: Routes, event: DnsAnswer) -> list[tuple[str | None, str | None]]:
    routes.begin()
    return [(s.client.name, s.server.name) for s in routes.dns(event, final=False).slots]


def test_a_repeated_question_takes_the_remembered_route(store: IdentityStore) -> None:
    routes, _, _ = routes_of(store)
    first = routes.dns(answer(CART, "10.1.0.10", "10.96.4.2", ts=100.0), final=False)
    again = routes.dns(answer(CART, "10.1.0.10", "10.96.4.2", ts=200.0), final=False)
    assert again is first and [s.server.name for s in first.slots] == ["cart"]


def test_a_reused_ip_still_resolves_each_event_at_its_own_time(store: IdentityStore) -> None:
    store.put_pod("f", pod("frontend-0", "10.1.0.10", uid="f", workload="frontend", deleted=150))
    store.put_pod("r", pod("reports-0", "10.1.0.10", uid="r", workload="reports", created=150))
    routes, _, _ = routes_of(store)
    for _ in range(2):  # the second time from remembered routes
        assert names(routes, answer(CART, "10.1.0.10", ts=100.0)) == [("frontend", "cart")]
        assert names(routes, answer(CART, "10.1.0.10", ts=300.0)) == [("reports", "cart")]


def test_a_service_change_forgets_the_routes_by_name(store: IdentityStore) -> None:
    routes, _, _ = routes_of(store)
    assert names(routes, answer(CART, "10.1.0.10")) == [("frontend", "cart")]
    store.put_service("shop/cart", service("cart", "10.96.4.2", "cart", "cart-canary"))
    assert names(routes, answer(CART, "10.1.0.10")) == [
        ("frontend", "cart"),
        ("frontend", "cart-canary"),
    ]


def test_a_headless_pod_name_follows_pod_changes(store: IdentityStore) -> None:
    store.put_pod("m", pod("mongo-0", "10.1.0.20", uid="m", workload="mongo", subdomain="mongo"))
    routes, _, _ = routes_of(store)
    headless = "mongo-0.mongo.shop.svc.cluster.local"
    assert names(routes, answer(headless, "10.1.0.10")) == [("frontend", "mongo")]
    store.put_pod(
        "m", pod("mongo-0", "10.1.0.21", uid="m2", workload="mongo-v2", subdomain="mongo")
    )
    assert names(routes, answer(headless, "10.1.0.10")) == [("frontend", "mongo-v2")]


def test_a_pod_ip_name_is_resolved_at_each_event_time(store: IdentityStore) -> None:
    store.put_pod("c", pod("cart-0", "10.1.0.11", uid="c", workload="cart", deleted=150))
    store.put_pod("n", pod("notes-0", "10.1.0.11", uid="n", workload="notes", created=150))
    routes, _, _ = routes_of(store)
    name = "10-1-0-11.shop.pod.cluster.local"
    assert names(routes, answer(name, "10.1.0.10", ts=100.0)) == [("frontend", "cart")]
    assert names(routes, answer(name, "10.1.0.10", ts=300.0)) == [("frontend", "notes")]


def test_every_repeat_counts_its_drops(store: IdentityStore) -> None:
    store.put_pod("x", pod("scraper-0", "10.1.0.30", uid="x", namespace="monitoring"))
    routes, resolver, _ = routes_of(store, excluded_namespaces=frozenset({"monitoring"}))
    for _ in range(3):
        assert routes.dns(answer(CART, "10.1.0.30"), final=False).slots == ()
    assert resolver.counters.dropped == {"excluded_namespace": 3}


def test_a_remembered_external_answer_still_names_its_addresses(store: IdentityStore) -> None:
    routes, _, _ = routes_of(store)
    for ts in (100.0, 1000.0):  # the second answer takes the remembered route
        routes.dns(answer("api.stripe.com", "10.1.0.10", "203.0.113.7", ts=ts), final=False)
    call = routes.socket(socket("10.1.0.10", 40000, "203.0.113.7", 443, ts=1010.0), final=False)
    assert [(s.server.type, s.server.dns_name) for s in call.slots] == [
        ("external", "api.stripe.com")
    ]


def test_sockets_are_remembered_by_their_holders_and_side(store: IdentityStore) -> None:
    routes, _, _ = routes_of(store)
    out = routes.socket(socket("10.1.0.10", 40000, "10.96.4.2", 80), final=False)
    again = routes.socket(socket("10.1.0.10", 40001, "10.96.4.2", 80, ts=200.0), final=False)
    inbound = routes.socket(socket("10.1.0.11", 80, "10.1.0.10", 40000, "server"), final=False)
    assert again is out and inbound is not out
    assert [(s.client.name, s.server.name) for s in out.slots] == [("frontend", "cart")]
    assert [(s.client.name, s.server.name) for s in inbound.slots] == [("frontend", "cart")]


def test_a_call_through_nat_and_a_direct_call_to_the_same_pod_are_two_routes(
    store: IdentityStore,
) -> None:
    routes, _, combine = routes_of(store)
    via = socket("10.1.0.10", 40000, "10.1.0.11", 8080, pod_uid="f", dialled=("10.96.4.2", 80))
    direct = socket("10.1.0.10", 40001, "10.1.0.11", 8080, pod_uid="f")
    for _ in range(2):  # the second time through the hot loop's remembered routes
        routes.connections([via, direct], 100.0, False, [])
    by_service = {s.server.service for s in combine.urgent()}
    assert by_service == {"cart", None}


def test_unknown_identities_are_late_and_nothing_is_remembered(store: IdentityStore) -> None:
    routes, _, _ = routes_of(store)
    with pytest.raises(Late):
        routes.dns(answer(CART, "10.1.0.99"), final=False)
    fallback = routes.dns(answer(CART, "10.1.0.99"), final=True)
    assert [s.client.ip for s in fallback.slots] == ["10.1.0.99"]
    store.put_pod("n", pod("newcomer-0", "10.1.0.99", uid="n", workload="newcomer"))
    assert names(routes, answer(CART, "10.1.0.99")) == [("newcomer", "cart")]


def test_the_hot_loop_sights_answers_and_sets_late_ones_aside(store: IdentityStore) -> None:
    routes, _, combine = routes_of(store)
    late: list[DnsAnswer] = []
    events = [answer(CART, "10.1.0.10", ts=ts) for ts in (1.0, 2.0, 3.0)]
    assert routes.answers([*events, answer(CART, "10.1.0.99")], 100.0, False, late) == 3
    assert [a.client_ip for a in late] == ["10.1.0.99"]
    (sighting,) = combine.urgent()
    assert (sighting.count, sighting.first_seen, sighting.last_seen) == (3, 1.0, 3.0)
    routes.answers(events, 101.0, False, late)
    assert combine.urgent() == [] and combine.held == 1


def test_the_socket_hot_loop_sights_connections_and_sets_late_ones_aside(
    store: IdentityStore,
) -> None:
    routes, _, combine = routes_of(store)
    late: list[SocketObservation] = []
    calls = [socket("10.1.0.10", 40000, "10.96.4.2", 80, ts=ts, pod_uid="f") for ts in (1.0, 2.0)]
    unknown = socket("10.1.0.10", 40001, "10.9.9.9", 80, pod_uid="f")
    assert routes.connections([*calls, unknown], 100.0, False, late) == 2
    assert late == [unknown]
    (sighting,) = combine.urgent()
    assert (sighting.count, sighting.ports, sighting.sources) == (2, (80,), ("socket-client",))
    routes.connections(calls, 101.0, False, late)
    assert combine.urgent() == [] and combine.held == 1
    other_port = socket("10.1.0.10", 40002, "10.96.4.2", 8080, pod_uid="f")
    routes.connections([other_port], 102.0, False, late)
    (news,) = combine.urgent()  # a new port is news at once, with the held repeats
    assert news.ports == (80, 8080) and news.count == 3


def test_a_udp_flow_proves_a_udp_port_of_the_backend_it_reached(store: IdentityStore) -> None:
    routes, _, combine = routes_of(store)
    udp = socket(
        "10.1.0.10", 40000, "10.1.0.11", 53, pod_uid="f", dialled=("10.96.4.2", 53), transport="udp"
    )
    tcp = socket("10.1.0.10", 40001, "10.1.0.11", 53, pod_uid="f", dialled=("10.96.4.2", 53))
    for _ in range(2):  # the second time through the hot loop's remembered route
        assert routes.connections([udp], 100.0, False, []) == 1
    (sighting,) = combine.urgent()
    assert (sighting.server.name, sighting.server.service) == ("cart", "cart")
    assert (sighting.ports, sighting.udp_ports, sighting.count) == ((), (53,), 2)
    routes.connections([tcp], 101.0, False, [])
    (news,) = combine.urgent()  # the same number over TCP is a new port
    assert (news.ports, news.udp_ports) == ((53,), (53,))


def test_routes_of_replaced_pods_are_pruned_so_churn_keeps_memory_flat(
    store: IdentityStore,
) -> None:
    routes, _, _ = routes_of(store)
    sizes = []
    for i in range(20_000):  # a pod replaced again and again, each version called once
        uid = f"worker-{i}"
        store.put_pod(uid, pod(f"worker-{i}", "10.1.0.50", uid=uid, workload="worker", created=i))
        routes.begin()
        obs = socket("10.1.0.50", 40000, "10.1.0.11", 7070, ts=i + 0.5, pod_uid=uid)
        routes.socket(obs, final=False)
        routes.dns(answer(CART, "10.1.0.50", "10.96.4.2", ts=i + 0.5), final=False)
        store.put_pod(uid, None)  # its tombstone
        sizes.append(len(routes))
    assert max(sizes) < 4 * 1024  # before: one route per pod version ever seen


def test_an_answer_counts_every_identical_answer_capture_folded_into_it(
    store: IdentityStore,
) -> None:
    routes, _, combine = routes_of(store)
    folded = [
        answer(CART, "10.1.0.10", ts=1.0, count=3),
        answer(CART, "10.1.0.10", ts=2.0, count=2),
    ]
    routes.answers(folded, 100.0, False, [])
    (sighting,) = combine.urgent()
    assert sighting.count == 5  # before: 2, one per record


def test_an_answer_seen_on_the_client_node_and_the_server_node_counts_once(
    store: IdentityStore,
) -> None:
    routes, resolver, combine = routes_of(store)
    on_client_node = answer(CART, "10.1.0.10", ts=1.0, node="node-a")  # frontend-0 runs here
    on_server_node = answer(CART, "10.1.0.10", ts=1.001, node="node-b")  # its DNS server's node
    for _ in range(2):  # the second time from remembered routes
        routes.answers([on_client_node, on_server_node], 100.0, False, [])
    (sighting,) = combine.urgent()
    assert sighting.count == 2  # before: 4, each answer twice
    assert resolver.counters.dropped["dns_seen_on_other_node"] == 2


def test_an_answer_whose_client_has_no_known_node_counts_where_it_is_seen(
    store: IdentityStore,
) -> None:
    routes, resolver, combine = routes_of(store)
    stranger = [answer(CART, "192.0.2.7", node=node) for node in ("node-a", "node-b")]
    routes.answers(stranger, 100.0, True, [])
    (sighting,) = combine.urgent()
    assert (sighting.client.type, sighting.count) == ("ip", 2)  # nothing says which is its node
    assert resolver.counters.dropped["dns_seen_on_other_node"] == 0


# --- health ---------------------------------------------------------------------------


def tracked(node: str, health: FlowHealth, ts: float = 100.0) -> SocketObservation:
    """What conntrack on ``node`` reports of frontend-0 (on node-a) calling cart through
    its service."""
    seen = socket("10.1.0.10", 40000, "10.1.0.11", 7070, ts=ts, dialled=("10.96.4.2", 80))
    return msgspec.structs.replace(seen, origin="conntrack", node=node, health=health)


def test_a_flow_tracked_on_the_client_and_the_server_node_counts_its_health_once(
    store: IdentityStore,
) -> None:
    routes, resolver, combine = routes_of(store)
    for node in ("node-a", "node-b"):  # a flow between two nodes is tracked on both
        routes.connections([tracked(node, FlowHealth(opened=1))], 100.0, False, [])
    (sighting,) = combine.urgent()
    assert sighting.count == 2 and sighting.health == FlowHealth(opened=1)
    assert resolver.counters.dropped["health_seen_on_other_node"] == 1


def test_health_that_opened_nothing_is_no_sighting(store: IdentityStore) -> None:
    routes, _, combine = routes_of(store)
    assert routes.connections([tracked("node-a", FlowHealth(opened=1))], 100.0, False, []) == 1
    combine.urgent()
    ended = tracked("node-a", FlowHealth(closed=1, failed=1, bytes_sent=9), ts=200.0)
    assert routes.connections([ended], 200.0, False, []) == 0
    assert combine.urgent() == []
    (alone,) = combine.drain()
    assert alone.count == 0 and alone.health == FlowHealth(closed=1, failed=1, bytes_sent=9)
    assert (alone.client.name, alone.server.name) == ("frontend", "cart")


def test_a_scanned_client_socket_with_its_rtt_is_a_sighting_and_carries_the_rtt(
    store: IdentityStore,
) -> None:
    routes, _, combine = routes_of(store)
    scanned = msgspec.structs.replace(
        socket("10.1.0.10", 40000, "10.1.0.11", 7070, ts=100.0),
        node="node-a",
        health=FlowHealth(retransmits=2, rtt=RttSamples.of(1500)),
    )
    assert routes.connections([scanned], 100.0, False, []) == 1  # opened nothing, still seen
    (sighting,) = combine.urgent()
    assert sighting.count == 1 and sighting.ports == (7070,)
    assert sighting.health == FlowHealth(retransmits=2, rtt=RttSamples.of(1500))
