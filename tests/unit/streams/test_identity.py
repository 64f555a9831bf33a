"""The identity store answers who held an IP at the time of an event."""

from __future__ import annotations

import msgspec
from helpers.streamrecords import node, pod, service

from callmap.wire import PODS, PodIdentity, decode, encode
from streams.identity import IdentityStore


def holder_key(store: IdentityStore, ip: str, ts: float) -> str | None:
    holding = store.holder(ip, ts)
    return None if holding is None else holding.key


def test_a_reused_ip_belongs_to_whoever_held_it_at_the_time() -> None:
    store = IdentityStore(clock_skew=0, deletion_grace=0)
    store.put_pod("old", pod("cart-1", "10.1.0.5", uid="old", created=0, deleted=100))
    store.put_pod("new", pod("email-1", "10.1.0.5", uid="new", created=150))
    assert holder_key(store, "10.1.0.5", 50) == "old"
    assert holder_key(store, "10.1.0.5", 120) is None  # nobody held it then
    assert holder_key(store, "10.1.0.5", 200) == "new"


def test_the_newer_holder_wins_when_records_overlap() -> None:
    store = IdentityStore()
    store.put_pod("old", pod("cart-1", "10.1.0.5", uid="old", created=0))  # deletion not seen yet
    store.put_pod("new", pod("email-1", "10.1.0.5", uid="new", created=150))
    assert holder_key(store, "10.1.0.5", 200) == "new"
    assert holder_key(store, "10.1.0.5", 100) == "old"


def test_a_terminating_pod_answers_for_its_ip_until_someone_else_holds_it() -> None:
    store = IdentityStore(deletion_grace=60)
    store.put_pod("old", pod("cart-1", "10.1.0.5", uid="old", created=0, deleted=100))
    assert holder_key(store, "10.1.0.5", 130) == "old"
    assert holder_key(store, "10.1.0.5", 170) is None
    store.put_pod("new", pod("email-1", "10.1.0.5", uid="new", created=120))
    assert holder_key(store, "10.1.0.5", 130) == "new"


def test_an_event_a_moment_before_creation_tolerates_clock_skew() -> None:
    store = IdentityStore(clock_skew=5)
    store.put_pod("p", pod("cart-1", "10.1.0.5", uid="p", created=100))
    assert holder_key(store, "10.1.0.5", 97) == "p"
    assert holder_key(store, "10.1.0.5", 90) is None


def test_updates_replace_and_tombstones_forget() -> None:
    store = IdentityStore()
    store.put_pod("p", pod("cart-1", "10.1.0.5", uid="p"))
    store.put_pod("p", pod("cart-1", "10.1.0.6", uid="p"))
    assert holder_key(store, "10.1.0.5", 1) is None
    assert holder_key(store, "10.1.0.6", 1) == "p"
    assert store.pod_named("shop", "cart-1") is not None
    store.put_pod("p", None)
    assert holder_key(store, "10.1.0.6", 1) is None and store.pod_named("shop", "cart-1") is None


def test_host_network_pods_leave_their_nodes_ip_to_the_node() -> None:
    store = IdentityStore()
    store.put_node("node-a", node("node-a", "192.168.1.10"))
    store.put_pod("h", pod("agent-x", "192.168.1.10", uid="h", host_network=True))
    holding = store.holder("192.168.1.10", 5)
    assert holding is not None and (holding.kind, holding.key) == ("node", "node-a")


def test_services_hold_their_cluster_ips_until_deleted() -> None:
    store = IdentityStore()
    store.put_service("shop/cart", service("cart", "10.96.4.2", "cartservice"))
    holding = store.holder("10.96.4.2", 1e9)
    assert holding is not None and holding.kind == "service" and holding.key == "shop/cart"
    store.put_service("shop/cart", None)
    assert store.holder("10.96.4.2", 1e9) is None


def test_the_store_keeps_no_labels_and_shares_repeated_strings() -> None:
    store = IdentityStore()
    for uid in ("a", "b"):  # decoded from the wire, as the stream app gets them
        labelled = msgspec.structs.replace(
            pod(f"cart-{uid}", f"10.1.0.{ord(uid)}", uid=uid, workload="cart"),
            labels={"app": "cart"},
        )
        wire = encode(labelled)
        record = decode(PODS, wire)
        assert isinstance(record, PodIdentity) and record.labels
        store.put_pod(uid, record)
    a, b = store.pods["a"], store.pods["b"]
    assert a.labels == {} and (a.name, a.workload.name) == ("cart-a", "cart")
    assert a.namespace is b.namespace and a.workload.name is b.workload.name
