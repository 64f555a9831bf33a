"""Handlers: reconcile after every list, count and log bad input, follow owner changes."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from helpers.apiobjects import controller, node, owner, pod, service

from callmap.counters import Counters
from callmap.wire import WorkloadRef
from watch.catalog import Catalog
from watch.handlers import NodeHandler, PodHandler, ServiceHandler
from watch.identitytable import Change, IdentityTables
from watch.kubeclient import OWNERS
from watch.objects import OwnerRef, SlimOwner, slim_owner
from watch.options import LabelPolicy
from watch.ownercache import OwnerHandler, OwnerResolver


class Cluster:
    """What the handlers would see from an API server: controllers by uid."""

    def __init__(self) -> None:
        self.controllers: dict[str, Any] = {}
        self.now = 100.0
        self.out: list[Change] = []
        self.counters = Counters()
        self.catalog = Catalog("test", IdentityTables(60.0, self.out.append))
        self.resolver = OwnerResolver(self.fetch, self.counters.stage("owners"))
        self.pods = PodHandler(
            self.catalog, self.resolver, LabelPolicy(), self.counters.stage("pods"), self.clock
        )

    def clock(self) -> float:
        return self.now

    async def fetch(self, ref: OwnerRef, namespace: str) -> SlimOwner | None:
        obj = self.controllers.get(ref.uid)
        return slim_owner(obj, ref.kind) if obj is not None else None

    def workload_of(self, uid: str) -> WorkloadRef:
        record = self.catalog.tables.pods.get(uid)
        assert record is not None
        return record.workload


async def list_all(handler: Any, objects: list[Any]) -> None:
    await handler.begin_list()
    for obj in objects:
        await handler.listed(obj)
    await handler.end_list()


async def test_a_pod_that_vanished_between_two_lists_gets_its_deletion_record() -> None:
    cluster = Cluster()
    await list_all(cluster.pods, [pod("a-1"), pod("b-1")])
    cluster.now = 200.0
    await list_all(cluster.pods, [pod("a-1")])
    record = cluster.catalog.tables.pods.get("uid-shop-b-1")
    assert record is not None and record.deleted == 200.0
    assert cluster.out[-1].record == record and len(cluster.out) == 3


async def test_a_pod_too_broken_to_use_still_counts_as_present_in_a_list() -> None:
    cluster = Cluster()
    await list_all(cluster.pods, [pod("a-1")])
    broken = pod("a-1")
    broken["status"]["podIPs"] = [{"ip": "not-an-ip"}]
    await list_all(cluster.pods, [broken])
    record = cluster.catalog.tables.pods.get("uid-shop-a-1")
    assert record is not None and record.deleted is None  # the last good record stands


async def test_bad_objects_are_counted_and_logged_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = Cluster()
    services = ServiceHandler(cluster.catalog, cluster.counters.stage("services"), cluster.clock)
    nodes = NodeHandler(cluster.catalog, cluster.counters.stage("nodes"), cluster.clock)
    no_uid = pod("x")
    del no_uid["metadata"]["uid"]
    weird = service("weird", type="Sideways")
    with caplog.at_level(logging.WARNING, logger="watch.handlers"):
        await list_all(cluster.pods, [no_uid, "not an object", pod("ok")])
        await services.event("ADDED", weird)
        await nodes.event("MODIFIED", {"metadata": {}})
    totals = cluster.counters.totals()
    assert totals["pods"].dropped == {"bad_object": 2} and totals["pods"].emitted == 1
    assert totals["services"].dropped == {"bad_object": 1}
    assert totals["nodes"].dropped == {"bad_object": 1}
    assert "Pod shop/x: metadata.uid: missing; skipped" in caplog.text
    assert "Service shop/weird: spec.type: unknown service type 'Sideways'" in caplog.text


async def test_an_unknown_owner_kind_is_the_workload_and_is_counted() -> None:
    cluster = Cluster()
    rollout = owner("Rollout", "web", "ro-1", "argoproj.io/v1alpha1")
    await cluster.pods.event("ADDED", pod("web-1", owners=[rollout]))
    assert cluster.workload_of("uid-shop-web-1") == WorkloadRef(kind="Rollout", name="web")
    assert cluster.counters.totals()["owners"].dropped == {"custom_kind": 1}


async def test_a_pod_deleted_before_it_was_ever_seen_still_gets_a_record() -> None:
    cluster = Cluster()
    await cluster.pods.event("DELETED", pod("short-1"))
    records = [c.record for c in cluster.out]
    assert [r.deleted for r in records if r is not None] == [None, 100.0]


async def test_owners_are_fetched_lazily_and_a_changed_owner_moves_its_pods() -> None:
    cluster = Cluster()
    deployment = owner("Deployment", "web", "d-1")
    cluster.controllers["rs-1"] = controller("ReplicaSet", "web-7d9f", "rs-1", owners=[deployment])
    cluster.controllers["d-1"] = controller("Deployment", "web", "d-1")
    rs = owner("ReplicaSet", "web-7d9f", "rs-1")
    await list_all(cluster.pods, [pod("web-7d9f-a", owners=[rs]), pod("web-7d9f-b", owners=[rs])])
    assert cluster.workload_of("uid-shop-web-7d9f-a") == WorkloadRef(kind="Deployment", name="web")
    assert cluster.counters.totals()["owners"].seen == 2  # one GET each, for both pods

    replicasets = OwnerHandler(
        OWNERS["apps", "ReplicaSet"],
        cluster.resolver,
        cluster.pods.owners_changed,
        cluster.counters.stage("owners"),
    )
    unrelated = controller("ReplicaSet", "other", "rs-9")
    await replicasets.event("ADDED", unrelated)
    assert "rs-9" not in cluster.resolver.cache  # only what pods need is cached

    cluster.controllers["d-2"] = controller("Deployment", "web-next", "d-2")
    adopted = controller(
        "ReplicaSet", "web-7d9f", "rs-1", owners=[owner("Deployment", "web-next", "d-2")]
    )
    await replicasets.event("MODIFIED", adopted)
    for name in ("web-7d9f-a", "web-7d9f-b"):
        assert cluster.workload_of(f"uid-shop-{name}") == WorkloadRef(
            kind="Deployment", name="web-next"
        )


async def test_a_relisted_owner_kind_forgets_cached_owners_that_are_gone() -> None:
    cluster = Cluster()
    cluster.controllers["rs-1"] = controller("ReplicaSet", "web-7d9f", "rs-1")
    await cluster.pods.event(
        "ADDED", pod("web-7d9f-a", owners=[owner("ReplicaSet", "web-7d9f", "rs-1")])
    )
    replicasets = OwnerHandler(
        OWNERS["apps", "ReplicaSet"],
        cluster.resolver,
        cluster.pods.owners_changed,
        cluster.counters.stage("owners"),
    )
    await list_all(replicasets, [])
    assert "rs-1" not in cluster.resolver.cache


async def test_nodes_reconcile_too() -> None:
    cluster = Cluster()
    nodes = NodeHandler(cluster.catalog, cluster.counters.stage("nodes"), cluster.clock)
    await list_all(nodes, [node("n1", ("InternalIP", "192.168.5.1")), node("n2")])
    await list_all(nodes, [node("n1", ("InternalIP", "192.168.5.1"))])
    assert cluster.catalog.tables.nodes.live_keys() == {"n1"}
    gone = cluster.catalog.tables.nodes.get("n2")
    assert gone is not None and gone.deleted == 100.0
