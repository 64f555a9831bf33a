"""`lab up --kubernetes`: the lab registered in a real API server of its own.

The watcher lists that API server exactly as it would a cluster (`callmap
watch --dump-inventory`, with the arguments `lab run --kubernetes` gives it),
and what it makes of the lab must be what the lab's inventory file says:
the same pods, workloads, labels, addresses, services and nodes, before and
after churn (the deleted pod gone, its replacement holding its addresses
under a new uid). Then `lab down` stops that API server, also when the
state file is lost.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from helpers.labfixtures import lab_leftovers, skip_without_root, unique_name, write_topology

from callmap.inventory import inventory_records, load_inventory
from callmap.wire import NodeIdentity, PodIdentity, ServiceIdentity
from devtools.process import alive
from lab.churn import run_churn
from lab.errors import LabError
from lab.kubeapi import KubeClient
from lab.kubelab import lab_servers
from lab.kubeobjects import SERVICE_NAME_LABEL, ObjectRef
from lab.pipeline import watch_args
from lab.runtime import release, up
from lab.state import LabState
from lab.teardown import down, leftover_labs
from lab.topologyrecords import object_prefix

pytestmark = [pytest.mark.netns, pytest.mark.kube, pytest.mark.timeout(600)]

# Every workload kind on two dual-stack nodes: the only pod of one of two
# workloads behind a service dies and its addresses go to the first pod of a
# CronJob (a new Job with it) that has a service of its own; a StatefulSet
# behind a headless service, a host-network DaemonSet, a bare Pod without
# labels, an ExternalName.
EVERY_KIND = """
nodes: [node-a, node-b]
dual_stack: true
workloads:
  - {namespace: web, name: front, replicas: 2, labels: {app: front, tier: web},
     service: {name: front, ports: [80]}}
  - {namespace: web, name: reviews-v1, labels: {app: reviews, version: v1}}
  - {namespace: web, name: reviews-v2, labels: {app: reviews, version: v2}}
  - {namespace: data, name: db, kind: StatefulSet, replicas: 2,
     service: {name: db, ports: [5432], headless: true}}
  - {namespace: ops, name: agent, kind: DaemonSet, host_network: true}
  - {namespace: ops, name: backup, kind: CronJob, replicas: 0,
     service: {name: backup, ports: [8080]}}
  - {namespace: ops, name: migrate, kind: Job, replicas: 2}
  - {namespace: ops, name: toolbox, kind: Pod, labels: {}}
services:
  - {namespace: web, name: reviews, ports: [9080], selects: [reviews-v1, reviews-v2]}
  - {namespace: web, name: pay, external_name: api.stripe.com}
externals:
  - {name: api.stripe.com, ips: [203.0.113.10], ports: [443]}
calls:
  - {from: web/front, to: reviews, port: 9080}
  - {from: web/front, to: db-1.db.data, port: 5432}
  - {from: ops/migrate, to: db.data, port: 5432}
  - {from: ops/toolbox, to: pay.web, port: 443}
  - {from: ops/agent, to: front.web, port: 80}
churn:
  - {at: 5, delete: web/reviews-v1, ip_to: ops/backup}
"""

SMALL = """
workloads:
  - {namespace: a, name: client}
  - {namespace: a, name: server, service: {name: server, ports: [80]}}
calls:
  - {from: a/client, to: server, port: 80}
"""


def _watcher_view(state: LabState) -> str:
    """What the watcher lists from the lab's API server, as an inventory document."""
    args = [*watch_args(state, state.cluster), "--dump-inventory", "-"]
    result = subprocess.run(
        [sys.executable, "-m", "callmap", "watch", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _identities(text: str, cluster: str) -> dict[str, dict[str, Any]]:
    """Records by key, without what only a source can know: uids, times."""
    records = inventory_records(load_inventory(text), cluster)
    pods = [p for p in records.pods if p.deleted is None]
    return {
        "pods": {f"{p.namespace}/{p.name}": _pod(p) for p in pods},
        "services": {f"{s.namespace}/{s.name}": _service(s) for s in records.services},
        "nodes": {n.name: _node(n) for n in records.nodes},
    }


def _pod(pod: PodIdentity) -> dict[str, Any]:
    return {
        "ips": pod.ips,
        "node": pod.node,
        "host_network": pod.host_network,
        "workload": (pod.workload.kind, pod.workload.name),
        "labels": dict(pod.labels),
        "name under a headless service": (pod.hostname, pod.subdomain),
    }


def _service(service: ServiceIdentity) -> dict[str, Any]:
    return {
        "type": service.type,
        "cluster_ips": service.cluster_ips,
        "external_name": service.external_name,
        "ports": service.ports,
        "workloads": sorted((w.namespace, w.kind, w.name) for w in service.workloads),
    }


def _node(node: NodeIdentity) -> dict[str, Any]:
    return {"ips": node.ips}


def _uids(text: str, cluster: str) -> dict[str, str]:
    pods = inventory_records(load_inventory(text), cluster).pods
    return {f"{p.namespace}/{p.name}": p.uid for p in pods if p.deleted is None}


def _assert_same_identities(state: LabState) -> str:
    listed = _watcher_view(state)
    seen = _identities(listed, state.cluster)
    written = _identities(Path(state.inventory).read_text(), state.cluster)
    # The API server's own Service is the only thing the lab did not write.
    kubernetes = seen["services"].pop("default/kubernetes")
    assert kubernetes["cluster_ips"] == ("10.96.0.1",)
    for kind in ("nodes", "services", "pods"):
        assert seen[kind] == written[kind], kind
    return listed


def _slice_targets(state: LabState, namespace: str, service: str) -> set[str]:
    """The pods the EndpointSlices of a service name, as the API server has them."""
    assert state.kube is not None
    collection = ObjectRef("EndpointSlice", namespace, "-").collection
    with KubeClient.for_pki(state.kube.server, Path(state.kube.directory) / "pki") as client:
        query = {"labelSelector": f"{SERVICE_NAME_LABEL}={service}"}
        slices = client.request("GET", collection, query=query)["items"]
    assert len(slices) == 2  # IPv4 and IPv6
    return {e["targetRef"]["name"] for s in slices for e in s.get("endpoints") or []}


def _server_pids(name: str) -> list[int]:
    return [pid for pids in lab_servers().get(name, {}).values() for pid in pids]


def _all_dead(pids: Iterable[int]) -> bool:
    return not any(alive(pid) for pid in pids)


def test_the_watcher_sees_in_the_api_server_what_the_inventory_says_before_and_after_churn(
    tmp_path: Path, kube_binaries: None
) -> None:
    skip_without_root()
    name = unique_name("itkube")
    state_dir = tmp_path / "state"
    state = up(write_topology(tmp_path, name, EVERY_KIND), state_dir, hold=True, kubernetes=True)
    try:
        assert state.kube is not None
        assert Path(state.kube.kubeconfig).is_file()
        assert len(_server_pids(name)) == 2  # its kube-apiserver and its etcd
        before = _assert_same_identities(state)
        uids_before = _uids(before, state.cluster)
        assert len(set(uids_before.values())) == len(uids_before)

        release(state_dir)
        final = run_churn(state_dir, sleep=lambda seconds: None)
        after = _assert_same_identities(final)
        uids_after = _uids(after, state.cluster)

        victim = next(p for p in final.pods if p.deleted is not None)
        replacement = next(p for p in final.live_pods() if p.ips == victim.ips)
        assert (victim.workload, replacement.workload) == ("web/reviews-v1", "ops/backup")
        assert f"{victim.namespace}/{victim.name}" not in uids_after
        reviews_v2 = {p.name for p in final.live_pods() if p.workload == "web/reviews-v2"}
        assert _slice_targets(final, "web", "reviews") == reviews_v2
        assert _slice_targets(final, "ops", "backup") == {replacement.name}
        key = f"{replacement.namespace}/{replacement.name}"
        assert key not in uids_before
        assert uids_after[key] not in uids_before.values()  # a new pod, a new uid
    finally:
        pids = _server_pids(name)
        report = down(name, state_dir)
    assert report.servers == [str(state_dir / "kube")]
    assert pids and _all_dead(pids)
    assert lab_leftovers(object_prefix(name), state_dir) == []
    assert not report.left


def test_down_all_stops_the_api_server_of_a_lab_whose_state_is_lost(
    tmp_path: Path, kube_binaries: None
) -> None:
    skip_without_root()
    name = unique_name("itkubelost")
    state_dir = tmp_path / "elsewhere"  # not the default: `down --all` cannot guess it
    topology = write_topology(tmp_path, name, SMALL)
    up(topology, state_dir, hold=True, kubernetes=True)
    pids = _server_pids(name)
    try:
        assert len(pids) == 2
        (state_dir / "lab.json").unlink()
        with pytest.raises(LabError, match="already up"):
            up(topology, tmp_path / "other", kubernetes=True)
        assert name in leftover_labs()
    finally:
        report = down(name)  # what `callmap lab down --all` does for each leftover lab
    assert report.servers == [str(state_dir / "kube")]
    assert _all_dead(pids)
    assert name not in leftover_labs()
    assert lab_leftovers(object_prefix(name), state_dir) == [str(state_dir)]  # files only
