"""ServiceExports (MCS API) mark services exported, where the CRD is installed.

The CRD is the MCS API's ServiceExport (multicluster.x-k8s.io/v1alpha1),
installed into the real API server by this test; the watcher finds it by
discovery at the start of its term.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from helpers.identitytopics import eventually
from helpers.kubewatch import Cluster, dump_inventory_file, options, running, service_named
from kubernetes_asyncio import client

from callmap.config import Settings
from callmap.inventory import inventory_records
from devtools.kube import KubeStatus
from watch.identitytable import IdentityTables

pytestmark = [pytest.mark.kube, pytest.mark.kafka]

GROUP, VERSION, PLURAL = "multicluster.x-k8s.io", "v1alpha1", "serviceexports"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "serviceexport", "kind": "ServiceExport"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


async def install_crd(admin: client.ApiClient) -> None:
    extensions = client.ApiextensionsV1Api(admin)
    try:
        await extensions.create_custom_resource_definition(CRD)
    except client.ApiException as exc:
        if exc.status != 409:  # installed by an earlier test
            raise
    deadline = time.monotonic() + 30
    while True:
        crd = await extensions.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
        conditions = {c.type: c.status for c in (crd.status.conditions or [])}
        if conditions.get("Established") == "True":
            return
        assert time.monotonic() < deadline, conditions
        await asyncio.sleep(0.2)


def exported(ns: str, name: str, expected: bool):  # type: ignore[no-untyped-def]
    def check(state: IdentityTables) -> None:
        assert service_named(state, ns, name).exported is expected

    return check


async def test_an_export_marks_its_service_and_its_deletion_unmarks_it(
    kube_api: KubeStatus, settings: Settings, admin: client.ApiClient, cluster: Cluster, ns: str
) -> None:
    await install_crd(admin)
    objects = client.CustomObjectsApi(admin)
    await cluster.service("api", clusterIP="10.96.50.1")
    await cluster.service("quiet", clusterIP="10.96.50.2")
    export = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ServiceExport",
        "metadata": {"name": "api"},
    }
    await objects.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, export)
    watch_options = options(kube_api)
    async with running(settings, watch_options) as watcher:
        cluster_name = watch_options.cluster
        await eventually(settings, cluster_name, exported(ns, "api", True))
        await eventually(settings, cluster_name, exported(ns, "quiet", False))
        every_export = await objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        assert watcher.exported_services() == len(every_export["items"])  # each has its service
        late = {**export, "metadata": {"name": "quiet"}}
        await objects.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, late)
        await eventually(settings, cluster_name, exported(ns, "quiet", True))
        await objects.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "api")
        await eventually(settings, cluster_name, exported(ns, "api", False))
        assert watcher.counters.stage("serviceexports").seen >= 2


async def test_an_inventory_dump_carries_the_exports_and_the_clusters_id(
    kube_api: KubeStatus, admin: client.ApiClient, cluster: Cluster, ns: str, tmp_path: Path
) -> None:
    await install_crd(admin)
    await cluster.service("ledger", clusterIP="10.96.51.1")
    await cluster.service("private", clusterIP="10.96.51.2")
    export = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ServiceExport"}
    await client.CustomObjectsApi(admin).create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, {**export, "metadata": {"name": "ledger"}}
    )
    kube_system = await client.CoreV1Api(admin).read_namespace("kube-system")
    inventory = dump_inventory_file(kube_api, tmp_path / "inventory.yaml", "dumped")
    assert inventory.cluster_uid == kube_system.metadata.uid
    services = {
        s.name: s for s in inventory_records(inventory, "dumped").services if s.namespace == ns
    }
    assert (services["ledger"].exported, services["private"].exported) == (True, False)
