"""An identity table publishes changes only, deletes with a retention, and reconciles."""

from __future__ import annotations

from callmap.wire import (
    PODS,
    SERVICES,
    PodIdentity,
    ServiceIdentity,
    WorkloadRef,
    local_identity_key,
    message_key,
)
from callmap.wire.topics import split_identity_key
from watch.identitytable import Change, IdentityTable, IdentityTables

RETENTION = 3600.0


def pod(uid: str, ip: str = "10.1.0.10", deleted: float | None = None) -> PodIdentity:
    return PodIdentity(
        cluster="test",
        uid=uid,
        namespace="shop",
        name=f"web-{uid}",
        ips=(ip,),
        workload=WorkloadRef(kind="Deployment", name="web"),
        deleted=deleted,
    )


def table() -> tuple[IdentityTable[PodIdentity], list[Change]]:
    out: list[Change] = []
    return IdentityTable(PODS, RETENTION, out.append), out


def test_keys_are_the_wire_keys_within_their_cluster() -> None:
    service = ServiceIdentity(cluster="c", namespace="shop", name="cart", type="ClusterIP")
    for spec, record in ((PODS, pod("u1")), (SERVICES, service)):
        wire = message_key(record)
        assert wire is not None
        assert split_identity_key(spec, wire)[1] == local_identity_key(record)
    assert message_key(service) == b"c/shop/cart"


def test_a_record_is_published_once_and_again_only_when_it_changes() -> None:
    pods, out = table()
    assert pods.put("u1", pod("u1")) is True
    assert pods.put("u1", pod("u1")) is False
    assert pods.put("u1", pod("u1", ip="10.1.0.11")) is True
    assert [c.record for c in out] == [pod("u1"), pod("u1", ip="10.1.0.11")]


def test_a_deleted_object_is_republished_with_deleted_then_tombstoned_after_retention() -> None:
    pods, out = table()
    pods.put("u1", pod("u1"))
    assert pods.delete("u1", now=100.0) is True
    assert pods.delete("u1", now=101.0) is False  # once
    assert out[-1] == Change(PODS, "u1", pod("u1", deleted=100.0))
    assert pods.expire(now=100.0 + RETENTION - 1) == []
    assert pods.get("u1") == pod("u1", deleted=100.0)  # late events still resolve against it
    assert pods.expire(now=100.0 + RETENTION) == [pod("u1", deleted=100.0)]
    assert out[-1] == Change(PODS, "u1", None) and "u1" not in pods


def test_a_record_that_carries_deleted_keeps_that_time_when_the_object_goes() -> None:
    pods, out = table()
    pods.put("u1", pod("u1", deleted=50.0))  # a finished pod
    assert pods.delete("u1", now=100.0) is False  # nothing new to say ...
    assert pods.expire(now=50.0 + RETENTION - 1) == []
    assert pods.expire(now=50.0 + RETENTION) == [pod("u1", deleted=50.0)]  # ... but it goes
    assert out[-1].record is None


def test_reconcile_deletes_every_live_key_the_list_did_not_have() -> None:
    pods, _ = table()
    for uid in ("u1", "u2", "u3"):
        pods.put(uid, pod(uid))
    pods.delete("u3", now=10.0)
    assert pods.reconcile({"u1"}, now=20.0) == ["u2"]
    assert pods.get("u2") == pod("u2", deleted=20.0)
    assert pods.get("u3") == pod("u3", deleted=10.0)
    assert pods.live_keys() == {"u1"}


def test_a_key_that_exists_again_is_live_again() -> None:
    out: list[Change] = []
    services = IdentityTable(SERVICES, RETENTION, out.append)
    cart = ServiceIdentity(cluster="c", namespace="shop", name="cart", type="ClusterIP")
    services.put("shop/cart", cart)
    services.delete("shop/cart", now=10.0)
    assert services.put("shop/cart", cart) is True
    assert services.expire(now=10.0 + RETENTION) == []
    assert out[-1].record == cart


def test_adopted_records_are_not_published_again_and_deleted_ones_expire_on_time() -> None:
    out: list[Change] = []
    tables = IdentityTables(RETENTION, out.append)
    tables.adopt(PODS, "u1", pod("u1"))
    tables.adopt(PODS, "u2", pod("u2", deleted=100.0))
    tables.adopt(PODS, "u3", pod("u3"))
    tables.adopt(PODS, "u3", None)  # a tombstone later on the topic
    assert out == [] and set(dict(tables.pods.items())) == {"u1", "u2"}
    assert tables.pods.put("u1", pod("u1")) is False
    assert [r.uid for r in tables.pods.expire(now=100.0 + RETENTION)] == ["u2"]
    assert out == [Change(PODS, "u2", None)]
