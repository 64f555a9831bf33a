"""The cluster lab against a real kube-apiserver: its manifests, and its API recorder.

Every object ``lab run --on cluster`` applies for a bundled topology is sent
as the server-side apply the lab makes, with strict field validation and
``dryRun=All`` (only the namespaces are created, since a dry run in a missing
namespace is refused): an unknown field, a bad enum or an invalid label is an
error, as it would be on the cluster.

The recorder lists and watches the server while the test writes pods' status,
and what it wrote explains a call as the truth reads it. Whole runs, with real
controllers, kubelets, IPAM and churn, are in tests/integration/cluster on the development
cluster.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from helpers.labplans import ON_CLUSTER

from devtools.kube import KubeStatus
from lab.addressing import plan
from lab.clusteraddresses import literal_targets
from lab.clusterhistory import ApiHistory
from lab.clusterlab import apply
from lab.clusterobjects import (
    ClusterTarget,
    cronjob_run,
    lab_objects,
    placeholder_pod,
)
from lab.clusterrecord import ApiRecorder, KubeAccess, load_record
from lab.clustertruth import CallRecord, TrueEdge, true_edges
from lab.errors import LabError
from lab.kubeapi import KubeClient
from lab.topology import load_topology

pytestmark = pytest.mark.kube

TOPOLOGIES = Path(__file__).resolve().parents[3] / "lab" / "topologies"


@pytest.fixture(scope="module")
def access(kube_api: KubeStatus, tmp_path_factory: pytest.TempPathFactory) -> KubeAccess:
    return KubeAccess.from_kubeconfig(kube_api.kubeconfig, tmp_path_factory.mktemp("access"))


@pytest.mark.parametrize("name", ON_CLUSTER)
def test_the_api_server_accepts_every_object_of_a_bundled_topology(
    access: KubeAccess, name: str
) -> None:
    layout = plan(load_topology(TOPOLOGIES / f"{name}.yaml"))
    addresses = {a: "10.200.1.9" for a, t in literal_targets(layout).items() if t.kind != "other"}
    target = ClusterTarget(
        lab=layout.topology.name,
        image="localhost/callmap/callmap:test",
        nodes=("node-1", "node-2"),
        host_dir="/var/lib/callmap-lab/host",
        addresses=addresses,
    )
    with access.client() as client:
        for manifest in lab_objects(layout, target):
            dry = manifest["kind"] != "Namespace"
            answer = apply(client, manifest, dry_run=dry)
            assert answer["metadata"]["name"] == manifest["metadata"]["name"]
            if manifest["kind"] == "CronJob":
                ref = f"{manifest['metadata']['namespace']}/{manifest['metadata']['name']}"
                run = cronjob_run(layout, target, ref, str(answer["metadata"]["uid"]))
                apply(client, run, dry_run=True)
            if manifest["kind"] == "Service" and manifest["spec"]["type"] == "ClusterIP":
                assert answer["spec"]["clusterIPs"]  # the cluster's own address
        apply(client, placeholder_pod(layout.topology.name, "node-1", 0, "img"), dry_run=True)


def test_strict_validation_refuses_what_a_cluster_would(access: KubeAccess) -> None:
    layout = plan(load_topology(TOPOLOGIES / "two-clients.yaml"))
    target = ClusterTarget("twoclients", "img", ("node-1",), "/tmp/lab")
    deployment = next(m for m in lab_objects(layout, target) if m["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicie"] = "Never"
    with access.client() as client, pytest.raises(LabError, match="imagePullPolicie"):
        apply(client, deployment, dry_run=True)


def _status(client: KubeClient, path: str, ips: list[str]) -> None:
    status = {"phase": "Running", "podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips]}
    client.merge_patch(f"{path}/status", {"status": status})


def test_the_recorder_sees_owners_addresses_services_and_deletions(
    access: KubeAccess, tmp_path: Path
) -> None:
    namespace = f"rec-{uuid.uuid4().hex[:8]}"
    record = tmp_path / "api.jsonl"
    with access.client() as client, ApiRecorder(access, record) as recorder:
        assert recorder.wait_listed(30), recorder.last_error
        client.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
        base = f"/api/v1/namespaces/{namespace}"
        apps = f"/apis/apps/v1/namespaces/{namespace}"
        owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cart", "uid": "d-1"}
        template = {
            "metadata": {"labels": {"app": "cart"}},
            "spec": {"containers": [{"name": "c", "image": "img"}]},
        }
        rs = client.create(
            f"{apps}/replicasets",
            {
                "metadata": {
                    "name": "cart-5d9c",
                    "ownerReferences": [{**owner, "controller": True}],
                },
                "spec": {"selector": {"matchLabels": {"app": "cart"}}, "template": template},
            },
        )
        service = client.create(
            f"{base}/services",
            {"metadata": {"name": "cart"}, "spec": {"selector": {"app": "cart"}, "ports": [
                {"port": 7070, "targetPort": 7070}]}},
        )  # fmt: skip
        rs_ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "cart-5d9c"}
        rs_ref |= {"uid": rs["metadata"]["uid"], "controller": True}
        for name, ip in (("cart-5d9c-aaaaa", "10.200.1.5"), ("front", "10.200.1.6")):
            labels = {"app": "cart"} if name.startswith("cart") else {"app": "front"}
            metadata = {"name": name, "labels": labels}
            if name.startswith("cart"):
                metadata["ownerReferences"] = [rs_ref]  # type: ignore[list-item]
            spec = {"nodeName": "node-1", **template["spec"]}
            client.create(f"{base}/pods", {"metadata": metadata, "spec": spec})
            _status(client, f"{base}/pods/{name}", [ip])
        time.sleep(1.0)
        called = time.time()
        time.sleep(1.0)
        client.delete(f"{base}/pods/cart-5d9c-aaaaa", grace_seconds=0)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and '"DELETED"' not in record.read_text():
            time.sleep(0.2)
    events, bad = load_record(record)
    assert bad == 0
    mine = [e for e in events if e.object["metadata"].get("namespace") == namespace]
    assert [(e.kind, e.event) for e in mine if e.kind == "Pod"][-1] == ("Pod", "DELETED")
    history = ApiHistory.from_events(events)
    holder = history.holder("10.200.1.5", called)
    assert holder is not None and holder.key == f"{namespace}/cart-5d9c-aaaaa"
    assert history.workload(holder) == (f"{namespace}/cart", None)  # Pod -> RS -> Deployment
    assert history.holder("10.200.1.5", time.time() + 60) is None
    cluster_ip = service["spec"]["clusterIP"]
    calls = [
        CallRecord(called, f"{namespace}/front", "cart", cluster_ip, 7070, True,
                   f"pong {namespace}/cart-5d9c-aaaaa"),
        CallRecord(called, f"{namespace}/front", "10.200.1.5", "10.200.1.5", 7070, True,
                   f"pong {namespace}/cart-5d9c-aaaaa"),
    ]  # fmt: skip
    truth = true_edges(calls, history)
    assert truth.edges == {TrueEdge(f"{namespace}/front", f"{namespace}/cart", 7070)}
    assert truth.notes == ()
