"""The hard cases of real clusters (issue #15), each resolved as docs/streams.md says.

Every test here failed before the rule it checks was written: the names say
the rule, the comments say what went wrong before.
"""

from __future__ import annotations

import pytest
from helpers.streamrecords import answer, node, pod, service, socket
from msgspec.structs import replace as msgspec_replace

from callmap.counters import StageCounters
from callmap.wire import Endpoint
from streams.combine import Combiner
from streams.identity import IdentityStore
from streams.resolve import Late, Resolver
from streams.routes import Routes

CLIENT_IP, CLIENT_IP6 = "10.1.0.10", "fd00::10"


def workload(name: str, service: str | None = None, kind: str = "Deployment") -> Endpoint:
    return Endpoint(type="workload", namespace="shop", name=name, kind=kind, service=service)


def external(name: str, ip: str | None = None) -> Endpoint:
    return Endpoint(type="external", dns_name=name, ip=ip)


def servers_of(sights: list) -> list[Endpoint]:  # type: ignore[type-arg]
    return [s.server for s in sights]


def clients_of(sights: list) -> list[Endpoint]:  # type: ignore[type-arg]
    return [s.client for s in sights]


@pytest.fixture
def store() -> IdentityStore:
    store = IdentityStore()
    store.put_pod("f", pod("frontend-0", CLIENT_IP, uid="f", workload="frontend"))
    return store


def resolver_of(store: IdentityStore) -> Resolver:
    return Resolver(store, StageCounters())


# --- 2. an IP belongs to a pod from the moment its status reports it ----------------


def test_a_pod_holds_its_ip_from_when_it_got_it_not_from_its_creation() -> None:
    store = IdentityStore()
    store.put_pod("old", pod("cart-0", "10.1.0.5", uid="old", created=0, deleted=None))
    # Created at 100 and Pending until 160; the old pod's deletion is not seen yet.
    store.put_pod("new", pod("email-0", "10.1.0.5", uid="new", created=100, ips_since=160))
    holder = store.holder("10.1.0.5", 130)  # before: the latest *creation* won
    assert holder is not None and holder.key == "old"
    holder = store.holder("10.1.0.5", 170)
    assert holder is not None and holder.key == "new"


def test_a_pending_pod_without_an_ip_holds_nothing() -> None:
    store = IdentityStore()
    pending = pod("email-0", "10.1.0.5", uid="p", created=100)
    store.put_pod("p", msgspec_replace(pending, ips=()))
    assert store.holder("10.1.0.5", 150) is None


# --- 3. an IP reused within the grace period, with clock skew ----------------------


def test_an_event_a_moment_before_the_next_holder_goes_to_it_not_to_the_deleted_one() -> None:
    store = IdentityStore(clock_skew=5, deletion_grace=60)
    store.put_pod("a", pod("cart-0", "10.1.0.5", uid="a", created=0, deleted=100))
    store.put_pod("b", pod("email-0", "10.1.0.5", uid="b", created=110, ips_since=110))
    # The node's clock is 3 s behind: an event of b's at 108 is b's (docs/streams.md: the
    # skew rule is for whoever holds the IP next; the grace only when nobody does).
    holder = store.holder("10.1.0.5", 107)
    assert holder is not None and holder.key == "b"
    holder = store.holder("10.1.0.5", 103)  # nobody within the skew: the one just deleted
    assert holder is not None and holder.key == "a"


# --- 4. a socket whose pod UID is not known yet -------------------------------------


def test_a_socket_with_an_unknown_pod_uid_waits_instead_of_asking_the_ip(
    store: IdentityStore,
) -> None:
    store.put_pod("c", pod("cart-0", "10.1.0.11", uid="c", workload="cart"))
    resolver = resolver_of(store)
    # The IP is still the frontend's in the store; the socket is in a new pod's namespace.
    obs = socket(CLIENT_IP, 40000, "10.1.0.11", 7070, pod_uid="new-pod")
    with pytest.raises(Late):
        resolver.socket(obs)
    routes = Routes("c1", resolver, Combiner())
    with pytest.raises(Late):
        routes.socket(obs, final=False)
    store.put_pod("new-pod", pod("email-0", CLIENT_IP, uid="new-pod", workload="email"))
    (sight,) = routes.socket(obs, final=False).slots
    assert sight.client == workload("email")  # nothing wrong was remembered
    stand_in = socket(CLIENT_IP, 40000, "10.1.0.11", 7070, pod_uid="never-seen")
    (final,) = resolver.socket(stand_in, final=True)
    assert final.client == Endpoint(type="ip", ip=CLIENT_IP)


# --- 5. pods recreated under the same name ------------------------------------------


def test_a_recreated_pod_is_found_by_its_name_and_a_deleted_one_never() -> None:
    store = IdentityStore()
    store.put_pod("old", pod("db-0", "10.1.0.5", uid="old", workload="db", subdomain="db"))
    store.put_pod(
        "new", pod("db-0", "10.1.0.6", uid="new", workload="db", created=50, subdomain="db")
    )
    # The old pod's deletion arrives after the new pod: before, it took the name back.
    store.put_pod(
        "old", pod("db-0", "10.1.0.5", uid="old", workload="db", deleted=60, subdomain="db")
    )
    found = store.pod_named("shop", "db-0")
    assert found is not None and found.uid == "new"
    found = store.pod_by_hostname("shop", "db", "db-0")
    assert found is not None and found.uid == "new"
    store.put_pod(
        "new", pod("db-0", "10.1.0.6", uid="new", workload="db", deleted=90, subdomain="db")
    )
    assert store.pod_named("shop", "db-0") is None
    assert store.pod_by_hostname("shop", "db", "db-0") is None


# --- 6. search paths and autopath ---------------------------------------------------


def test_an_autopath_answer_is_the_external_name_the_client_meant(store: IdentityStore) -> None:
    resolver = resolver_of(store)
    autopath = answer(
        "google.com.shop.svc.cluster.local",
        CLIENT_IP,
        "142.250.1.1",
        cnames=("google.com",),
    )
    assert servers_of(resolver.dns(autopath)) == [external("google.com")]  # was service:shop/com


def test_a_search_path_product_in_the_service_form_is_external_once_no_service_came(
    store: IdentityStore,
) -> None:
    resolver = resolver_of(store)
    product = answer(
        "google.com.svc.cluster.local", CLIENT_IP, "142.250.1.1", cnames=("google.com",)
    )
    with pytest.raises(Late):  # "com/google" might be an ExternalName service on its way
        resolver.dns(product)
    assert servers_of(resolver.dns(product, final=True)) == [external("google.com")]


def test_autopath_to_a_service_of_another_namespace_is_that_service(store: IdentityStore) -> None:
    store.put_pod("r", pod("redis-0", "10.1.0.30", uid="r", workload="redis", namespace="data"))
    store.put_service("data/redis", service("redis", "10.96.5.5", "redis", namespace="data"))
    resolver = resolver_of(store)
    autopath = answer(
        "redis.data.shop.svc.cluster.local",
        CLIENT_IP,
        "10.96.5.5",
        cnames=("redis.data.svc.cluster.local",),
    )
    (sight,) = resolver.dns(autopath)
    assert sight.server == Endpoint(
        type="workload", namespace="data", name="redis", kind="Deployment", service="redis"
    )


def test_a_name_shaped_like_a_pod_of_an_unknown_service_is_never_a_service(
    store: IdentityStore,
) -> None:
    resolver = resolver_of(store)
    odd = answer("google.com.shop.svc.cluster.local", CLIENT_IP, "142.250.1.1")  # no CNAME
    with pytest.raises(Late):
        resolver.dns(odd)
    assert resolver.dns(odd, final=True) == []  # was service:shop/com
    assert resolver.counters.dropped["unknown_cluster_name"] == 1


# --- 7. headless names as Kubernetes builds them ------------------------------------


def test_a_headless_name_finds_the_pod_by_hostname_and_subdomain_not_by_name(
    store: IdentityStore,
) -> None:
    # A pod named "web-7f9c" with hostname "primary" under the headless service "db".
    store.put_pod(
        "w",
        pod("web-7f9c", "10.1.0.40", uid="w", workload="web", subdomain="db", hostname="primary"),
    )
    resolver = resolver_of(store)
    (sight,) = resolver.dns(answer("primary.db.shop.svc.cluster.local", CLIENT_IP, "10.1.0.40"))
    assert sight.server == workload("web", service="db")


def test_a_headless_name_by_dashed_address_finds_the_pod_at_that_address(
    store: IdentityStore,
) -> None:
    store.put_pod("w", pod("web-7f9c", "10.1.0.40", uid="w", workload="web"))
    store.put_service("shop/db", service("db", None, "web", type="Headless"))
    resolver = resolver_of(store)
    (sight,) = resolver.dns(answer("10-1-0-40.db.shop.svc.cluster.local", CLIENT_IP, "10.1.0.40"))
    assert sight.server == workload("web", service="db")


# --- 8. dual stack and CDNs ---------------------------------------------------------


def test_an_answer_over_ipv4_names_the_ipv6_address_the_client_connects_from() -> None:
    store = IdentityStore()
    dual = pod("frontend-0", CLIENT_IP, uid="f", workload="frontend")
    store.put_pod("f", msgspec_replace(dual, ips=(CLIENT_IP, CLIENT_IP6)))
    resolver = resolver_of(store)
    resolver.dns(answer("api.example.com", CLIENT_IP, "2001:db8::7", ts=100))
    obs = socket(CLIENT_IP6, 40000, "2001:db8::7", 443, ts=101, pod_uid="f")
    assert servers_of(resolver.socket(obs)) == [external("api.example.com", "2001:db8::7")]


def test_names_sharing_a_cdn_address_stay_each_clients_own() -> None:
    store = IdentityStore()
    store.put_pod("a", pod("shop-0", "10.1.0.10", uid="a", workload="shop"))
    store.put_pod("b", pod("blog-0", "10.1.0.20", uid="b", workload="blog"))
    resolver = resolver_of(store)
    resolver.dns(answer("shop.example.com", "10.1.0.10", "198.51.100.80", ts=100))
    resolver.dns(answer("blog.example.org", "10.1.0.20", "198.51.100.80", ts=101))
    a = socket("10.1.0.10", 40000, "198.51.100.80", 443, ts=102, pod_uid="a")
    b = socket("10.1.0.20", 40000, "198.51.100.80", 443, ts=102, pod_uid="b")
    assert servers_of(resolver.socket(a)) == [external("shop.example.com", "198.51.100.80")]
    assert servers_of(resolver.socket(b)) == [external("blog.example.org", "198.51.100.80")]
    assert resolver.memory.ambiguous == 0


def test_a_client_given_one_address_under_two_names_gets_the_latest_and_it_is_counted() -> None:
    store = IdentityStore()
    store.put_pod("a", pod("shop-0", "10.1.0.10", uid="a", workload="shop"))
    resolver = resolver_of(store)
    resolver.dns(answer("img.example.com", "10.1.0.10", "198.51.100.80", ts=100, ttl=60))
    resolver.dns(answer("api.example.com", "10.1.0.10", "198.51.100.80", ts=110, ttl=60))
    later = socket("10.1.0.10", 40000, "198.51.100.80", 443, ts=111, pod_uid="a")
    # Before, the second answer overwrote the first, silently: now the ambiguity shows.
    assert servers_of(resolver.socket(later)) == [external("api.example.com", "198.51.100.80")]
    assert resolver.memory.ambiguous == 1


# --- 9. services in time ------------------------------------------------------------


def test_a_call_reaches_the_workloads_behind_the_service_at_its_time(store: IdentityStore) -> None:
    store.put_service("shop/cart", service("cart", "10.96.4.2", "cart-v1", workloads_since=0))
    store.put_service("shop/cart", service("cart", "10.96.4.2", "cart-v2", workloads_since=200))
    resolver = resolver_of(store)
    routes = Routes("c1", resolver, Combiner())
    name = "cart.shop.svc.cluster.local"
    late_answer = answer(name, CLIENT_IP, "10.96.4.2", ts=150)  # resolved after the change
    assert servers_of(resolver.dns(late_answer)) == [workload("cart-v1", "cart")]
    assert servers_of(resolver.dns(answer(name, CLIENT_IP, "10.96.4.2", ts=250))) == [
        workload("cart-v2", "cart")
    ]
    # Through the remembered routes as well, in any order.
    for ts, expected in ((250, "cart-v2"), (150, "cart-v1"), (260, "cart-v2")):
        route = routes.dns(answer(name, CLIENT_IP, "10.96.4.2", ts=ts), final=False)
        assert [slot.server.name for slot in route.slots] == [expected]
        obs = socket(CLIENT_IP, 40000, "10.96.4.2", 80, ts=ts, pod_uid="f")
        assert [slot.server.name for slot in routes.socket(obs, final=False).slots] == [expected]


def test_a_reused_cluster_ip_belongs_to_the_service_created_then() -> None:
    store = IdentityStore()
    old = service("old", "10.96.4.2", "old", created=0)
    store.put_service("shop/old", old)
    store.put_service("shop/new", service("new", "10.96.4.2", "new", created=120))
    store.put_service("shop/old", msgspec_replace(old, deleted=100))  # seen after the new one
    holder = store.holder("10.96.4.2", 50)  # before: both held it "forever", first listed won
    assert holder is not None and holder.key == "shop/old"
    holder = store.holder("10.96.4.2", 150)
    assert holder is not None and holder.key == "shop/new"


# --- 10. roles ----------------------------------------------------------------------


def test_a_node_port_call_reaches_the_service_behind_it(store: IdentityStore) -> None:
    store.put_node("node-b", node("node-b", "192.168.1.11"))
    store.put_service(
        "shop/web", service("web", "10.96.4.9", "web", type="NodePort", node_port=30080)
    )
    resolver = resolver_of(store)
    routes = Routes("c1", resolver, Combiner())
    to_node_port = socket(CLIENT_IP, 40000, "192.168.1.11", 30080, pod_uid="f")
    to_kubelet = socket(CLIENT_IP, 40001, "192.168.1.11", 10250, pod_uid="f")
    assert servers_of(resolver.socket(to_node_port)) == [workload("web", "web")]  # was node:node-b
    # One route per port on a node: the kubelet's port is the node's.
    assert [s.server.type for s in routes.socket(to_node_port, final=False).slots] == ["workload"]
    assert [s.server.type for s in routes.socket(to_kubelet, final=False).slots] == ["node"]


def test_a_sidecar_redirect_port_is_not_the_servers_port(store: IdentityStore) -> None:
    store.put_pod("c", pod("cart-0", "10.1.0.11", uid="c", workload="cart"))
    resolver = resolver_of(store)
    inbound = socket("10.1.0.11", 15006, CLIENT_IP, 40000, role="server", pod_uid="c")
    (sight,) = resolver.socket(inbound)
    assert (sight.client, sight.server, sight.port) == (
        workload("frontend"),
        workload("cart"),
        None,
    )
    combiner = Combiner()
    routes = Routes("c1", resolver, combiner)
    routes.connections([inbound], now=0.0, final=False, late=[])
    (sighting,) = combiner.urgent()
    assert sighting.ports == ()
