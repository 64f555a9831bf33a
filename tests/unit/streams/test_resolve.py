"""Resolution of DNS answers and socket observations into sightings."""

from __future__ import annotations

import pytest
from helpers.streamrecords import answer, node, pod, service, socket

from callmap.counters import StageCounters
from callmap.wire import Endpoint
from streams.identity import IdentityStore
from streams.resolve import APISERVER, Late, Resolver

FRONTEND = Endpoint(type="workload", namespace="shop", name="frontend", kind="Deployment")


def cart(service: str | None = None) -> Endpoint:
    return Endpoint(
        type="workload", namespace="shop", name="cartservice", kind="Deployment", service=service
    )


@pytest.fixture
def resolver() -> Resolver:
    store = IdentityStore()
    store.put_pod("f", pod("frontend-0", "10.1.0.10", uid="f", workload="frontend"))
    store.put_pod("c", pod("cartservice-0", "10.1.0.11", uid="c", workload="cartservice"))
    store.put_pod(
        "m",
        pod(
            "mongodb-1",
            "10.1.0.20",
            uid="m",
            namespace="data",
            workload="mongodb",
            kind="StatefulSet",
            subdomain="mongodb",
        ),
    )
    store.put_service("shop/cartservice", service("cartservice", "10.96.4.2", "cartservice"))
    store.put_service("shop/reviews", service("reviews", "10.96.4.3", "reviews-v1", "reviews-v2"))
    store.put_service("shop/empty", service("empty", "10.96.4.4"))
    store.put_service(
        "shop/payments",
        service("payments", None, type="ExternalName", external_name="pay.example.org"),
    )
    store.put_service("default/kubernetes", service("kubernetes", "10.96.0.1", namespace="default"))
    store.put_node("node-a", node("node-a", "192.168.1.10"))
    return Resolver(store, StageCounters())


def servers(sights: list) -> list[Endpoint]:  # type: ignore[type-arg]
    return [s.server for s in sights]


def test_a_service_name_is_an_edge_to_each_workload_behind_it(resolver: Resolver) -> None:
    sights = resolver.dns(answer("reviews.shop.svc.cluster.local", "10.1.0.10", "10.96.4.3"))
    assert [s.client for s in sights] == [FRONTEND, FRONTEND]
    assert [(s.name, s.service) for s in servers(sights)] == [
        ("reviews-v1", "reviews"),
        ("reviews-v2", "reviews"),
    ]
    assert {s.source for s in sights} == {"dns"}


def test_a_service_without_workloads_is_an_edge_to_the_service(resolver: Resolver) -> None:
    sights = resolver.dns(answer("empty.shop.svc.cluster.local", "10.1.0.10", "10.96.4.4"))
    assert servers(sights) == [Endpoint(type="service", namespace="shop", name="empty")]


def test_headless_and_pod_names_resolve_to_the_pods_workload(resolver: Resolver) -> None:
    (headless,) = resolver.dns(answer("mongodb-1.mongodb.data.svc.cluster.local", "10.1.0.10"))
    assert (headless.server.name, headless.server.kind, headless.server.service) == (
        "mongodb",
        "StatefulSet",
        "mongodb",
    )
    (by_ip,) = resolver.dns(answer("10-1-0-11.shop.pod.cluster.local", "10.1.0.10", "10.1.0.11"))
    assert by_ip.server == cart()


def test_the_api_server_and_external_names(resolver: Resolver) -> None:
    (api,) = resolver.dns(answer("kubernetes.default.svc.cluster.local", "10.1.0.10", "10.96.0.1"))
    assert api.server == APISERVER
    (ext,) = resolver.dns(answer("api.stripe.com", "10.1.0.10", "203.0.113.10"))
    assert ext.server == Endpoint(type="external", dns_name="api.stripe.com")
    (named,) = resolver.dns(answer("payments.shop.svc.cluster.local", "10.1.0.10", "198.51.100.7"))
    assert named.server == Endpoint(type="external", dns_name="pay.example.org", service="payments")


def test_a_client_socket_to_a_cluster_ip_reaches_the_workloads_behind_it(
    resolver: Resolver,
) -> None:
    (sight,) = resolver.socket(socket("10.1.0.10", 40000, "10.96.4.2", 7070))
    assert (sight.client, sight.server, sight.port, sight.source) == (
        FRONTEND,
        cart("cartservice"),
        7070,
        "socket-client",
    )
    (api,) = resolver.socket(socket("10.1.0.10", 40001, "10.96.0.1", 443))
    assert api.server == APISERVER


def test_a_client_socket_to_an_ip_from_a_dns_answer_is_that_external_name(
    resolver: Resolver,
) -> None:
    resolver.dns(answer("api.stripe.com", "10.1.0.10", "203.0.113.10", ts=100, ttl=30))
    (sight,) = resolver.socket(socket("10.1.0.10", 40000, "203.0.113.10", 443, ts=105))
    assert sight.server == Endpoint(type="external", dns_name="api.stripe.com", ip="203.0.113.10")
    with pytest.raises(Late):  # another client was not told that name
        resolver.socket(socket("10.1.0.11", 40000, "203.0.113.10", 443, ts=105))
    with pytest.raises(Late):  # long after the answer expired
        resolver.socket(socket("10.1.0.10", 40002, "203.0.113.10", 443, ts=1000))


def reviews(version: str) -> Endpoint:
    return Endpoint(
        type="workload",
        namespace="shop",
        name=f"reviews-{version}",
        kind="Deployment",
        service="reviews",
    )


def test_a_call_through_nat_reaches_the_one_workload_that_answered(resolver: Resolver) -> None:
    resolver.store.put_pod("r1", pod("reviews-v1-0", "10.1.0.30", uid="r1", workload="reviews-v1"))
    resolver.store.put_pod("r2", pod("reviews-v2-0", "10.1.0.31", uid="r2", workload="reviews-v2"))
    dialled = ("10.96.4.3", 9080)
    (to_v2,) = resolver.socket(
        socket("10.1.0.10", 40000, "10.1.0.31", 8080, dialled=dialled, origin="conntrack")
    )
    assert (to_v2.client, to_v2.server, to_v2.port) == (FRONTEND, reviews("v2"), 8080)
    (to_v1,) = resolver.socket(socket("10.1.0.10", 40001, "10.1.0.30", 8080, dialled=dialled))
    assert to_v1.server == reviews("v1")
    # Without the NAT it saw, a call to the service's address may have reached either.
    assert servers(resolver.socket(socket("10.1.0.10", 40002, *dialled))) == [
        reviews("v1"),
        reviews("v2"),
    ]


def test_a_call_through_nat_to_an_unknown_pod_reaches_every_workload_behind(
    resolver: Resolver,
) -> None:
    dialled = ("10.96.4.3", 9080)
    sights = resolver.socket(socket("10.1.0.10", 40000, "10.1.0.99", 8080, dialled=dialled))
    assert servers(sights) == [reviews("v1"), reviews("v2")]


def test_a_call_through_a_node_port_reaches_the_workload_that_answered(
    resolver: Resolver,
) -> None:
    resolver.store.put_service("shop/front", service("front", None, "frontend", node_port=30080))
    (sight,) = resolver.socket(
        socket("192.168.1.10", 50000, "10.1.0.10", 8080, dialled=("192.168.1.10", 30080))
    )
    assert sight.server == Endpoint(
        type="workload", namespace="shop", name="frontend", kind="Deployment", service="front"
    )


def test_an_external_name_service_answer_maps_its_addresses_too(resolver: Resolver) -> None:
    resolver.dns(answer("payments.shop.svc.cluster.local", "10.1.0.10", "198.51.100.7"))
    (sight,) = resolver.socket(socket("10.1.0.10", 40000, "198.51.100.7", 443))
    assert sight.server.dns_name == "pay.example.org"


def test_a_server_socket_is_an_exact_workload_to_workload_edge(resolver: Resolver) -> None:
    (sight,) = resolver.socket(socket("10.1.0.11", 7070, "10.1.0.10", 40000, role="server"))
    assert (sight.client, sight.server, sight.port, sight.source) == (
        FRONTEND,
        cart(),
        7070,
        "socket-server",
    )


def test_nodes_and_pod_uids(resolver: Resolver) -> None:
    (from_node,) = resolver.socket(socket("10.1.0.11", 7070, "192.168.1.10", 50000, role="server"))
    assert from_node.client == Endpoint(type="node", name="node-a", ip="192.168.1.10")
    (by_uid,) = resolver.socket(socket("10.9.9.9", 40000, "10.1.0.11", 7070, pod_uid="f"))
    assert by_uid.client == FRONTEND


def test_unknown_ips_are_late_until_final_then_raw_ip_endpoints(resolver: Resolver) -> None:
    with pytest.raises(Late):
        resolver.socket(socket("10.1.0.10", 40000, "10.1.9.9", 80))
    with pytest.raises(Late):
        resolver.dns(answer("api.stripe.com", "10.1.9.8", "203.0.113.10"))
    with pytest.raises(Late):
        resolver.dns(answer("nosuch.shop.svc.cluster.local", "10.1.0.10"))
    (sight,) = resolver.socket(socket("10.1.0.10", 40000, "10.1.9.9", 80), final=True)
    assert sight.server == Endpoint(type="ip", ip="10.1.9.9")
    (unknown_service,) = resolver.dns(
        answer("nosuch.shop.svc.cluster.local", "10.1.0.10"), final=True
    )
    assert unknown_service.server == Endpoint(type="service", namespace="shop", name="nosuch")
    assert resolver.fallbacks == 2


def test_excluded_namespaces_are_dropped_and_counted(resolver: Resolver) -> None:
    resolver.excluded = frozenset({"data"})
    assert resolver.dns(answer("mongodb-1.mongodb.data.svc.cluster.local", "10.1.0.10")) == []
    assert resolver.counters.dropped["excluded_namespace"] == 1


def test_names_no_cluster_object_can_have_are_counted(resolver: Resolver) -> None:
    assert resolver.dns(answer("weird.cluster.local", "10.1.0.10")) == []
    assert resolver.counters.dropped["unknown_cluster_name"] == 1
