"""Owners against the real API server: fetched lazily, refreshed when they change,
and odd ones (custom kinds, owners that are gone) counted without stopping the watcher.
Also the inventory dump, which resolves owners the same way."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from helpers.identitytopics import eventually
from helpers.kubewatch import (
    Cluster,
    dump_inventory_file,
    options,
    pod_named,
    ref,
    running,
    service_named,
)

from callmap.config import Settings
from callmap.inventory import inventory_records
from callmap.wire import ServiceWorkload, WorkloadRef
from devtools.kube import KubeStatus
from watch.identitytable import IdentityTables

pytestmark = [pytest.mark.kube, pytest.mark.kafka]


async def test_a_replicaset_adopted_by_another_deployment_moves_its_pods(
    kube_api: KubeStatus, settings: Settings, cluster: Cluster, ns: str
) -> None:
    web, web_next = await cluster.deployment("web"), await cluster.deployment("web-next")
    rs = await cluster.replica_set("web-7d9f", web)
    for name in ("web-7d9f-a", "web-7d9f-b"):
        await cluster.pod(name, ("10.3.0.1",), owner=rs)
    watch_options = options(kube_api)
    async with running(settings, watch_options) as watcher:

        def belongs_to(deployment: str):  # type: ignore[no-untyped-def]
            def check(state: IdentityTables) -> None:
                for name in ("web-7d9f-a", "web-7d9f-b"):
                    workload = pod_named(state, ns, name).workload
                    assert workload == WorkloadRef(kind="Deployment", name=deployment)

            return check

        await eventually(settings, watch_options.cluster, belongs_to("web"))
        patch = {"metadata": {"ownerReferences": [ref(web_next)]}}
        await cluster.apps.patch_namespaced_replica_set(
            "web-7d9f", ns, patch, _content_type="application/merge-patch+json"
        )
        await eventually(settings, watch_options.cluster, belongs_to("web-next"))
        assert watcher.counters.totals()["owners"].emitted >= 3  # RS, web, then web-next


async def test_custom_owner_kinds_and_vanished_owners_are_counted_not_fatal(
    kube_api: KubeStatus, settings: Settings, cluster: Cluster, ns: str
) -> None:
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "name": "gizmo",
        "uid": str(uuid.uuid4()),
        "controller": True,
    }
    await cluster.pod("gizmo-1", ("10.3.1.1",), owner_ref=widget)
    vanished = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "old-5c4b",
        "uid": str(uuid.uuid4()),
        "controller": True,
    }
    await cluster.pod("old-5c4b-x", ("10.3.1.2",), owner_ref=vanished)
    await cluster.service("gizmo")
    await cluster.endpoints("gizmo", [("gizmo-1", "10.3.1.1"), ("nobody", "10.3.1.9")])
    watch_options = options(kube_api)
    async with running(settings, watch_options) as watcher:

        def resolved(state: IdentityTables) -> None:
            assert pod_named(state, ns, "gizmo-1").workload == WorkloadRef(
                kind="Widget", name="gizmo"
            )
            assert pod_named(state, ns, "old-5c4b-x").workload == WorkloadRef(
                kind="ReplicaSet", name="old-5c4b"
            )
            assert service_named(state, ns, "gizmo").workloads == (
                ServiceWorkload(namespace=ns, kind="Widget", name="gizmo"),
            )

        await eventually(settings, watch_options.cluster, resolved)
        dropped = watcher.counters.totals()["owners"].dropped
        assert dropped["custom_kind"] >= 1 and dropped["owner_gone"] >= 1


async def test_dump_inventory_writes_what_the_watcher_would_publish(
    kube_api: KubeStatus, cluster: Cluster, ns: str, tmp_path: Path
) -> None:
    web = await cluster.deployment("web")
    rs = await cluster.replica_set("web-7d9f", web)
    await cluster.pod("web-7d9f-a", ("10.3.2.1",), owner=rs, labels={"app": "web"})
    await cluster.service("web", selector={"app": "web"})
    await cluster.endpoints("web", [("web-7d9f-a", "10.3.2.1")])
    inventory = dump_inventory_file(kube_api, tmp_path / "inventory.yaml", "dumped")
    assert inventory.cluster == "dumped"
    records = inventory_records(inventory, "dumped")
    (pod,) = [p for p in records.pods if p.namespace == ns]
    assert (pod.name, pod.ips, pod.workload) == (
        "web-7d9f-a",
        ("10.3.2.1",),
        WorkloadRef(kind="Deployment", name="web"),
    )
    (service,) = [s for s in records.services if s.namespace == ns]
    assert service.workloads == (ServiceWorkload(namespace=ns, kind="Deployment", name="web"),)
