"""A topology on a real Kubernetes cluster: up, release, down (``lab run --on cluster``).

The cluster is ``callmap dev cluster`` (:class:`devcluster.cluster.DevCluster`)
or anything with its interface (:class:`Cluster`). :meth:`ClusterLab.up`:

1. removes what a crashed run of the same lab left (its namespaces), refuses
   when a namespace of the topology exists and is not the lab's;
2. makes the lab's host directory (``<state dir>/host``, every pod's hostPath
   at :data:`lab.clusterobjects.LAB_MOUNT`: the callers' logs and the release
   file) and tells the cluster's "internet" the topology's externals (every
   external port, and the ports of calls that leave the cluster, on every
   external name; an address a call names that no external has becomes a name
   of its own, ``literal-<address>.callmap-lab.invalid``);
3. applies, with server-side apply (field manager ``callmap-lab``, strict
   field validation), the namespaces, the services and then the workloads
   wave by wave (:func:`lab.clusteraddresses.waves`): after each wave it waits
   until every pod of the wave runs with an address, binds the plan's pods to
   the real ones (:func:`lab.clusteraddresses.bind_pods`) and maps the plan's
   addresses the next waves call to the real pods', services' and nodes'
   addresses. A CronJob's run is applied once the CronJob has its uid;
4. waits until every call that runs (only ``before_capture`` ones while held)
   shows a success in its pod's log.

:meth:`ClusterLab.release` creates the release file; the held calls start
within a fraction of a second. Churn is :mod:`lab.clusterchurn`.
:meth:`ClusterLab.down` deletes every namespace labelled with the lab's name,
uncordons nodes the churn cordoned, and waits until the namespaces are gone.

The lab's own state (bindings, addresses, release time, churn steps done)
is ``<state dir>/cluster-lab.json``, rewritten after every change, for people
and post-mortems; the state directory (logs, API record) is kept after
``down``.
"""

from __future__ import annotations

import calendar
import ipaddress
import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from callmap.paths import cache_dir
from lab.addressing import Plan, plan
from lab.clusteraddresses import bind_pods, literal_targets, real_address, waves
from lab.clusterobjects import (
    LAB_LABEL,
    LOG_DIR,
    MANAGER,
    RELEASE_FILE,
    WORKLOAD_LABEL,
    ClusterTarget,
    Manifest,
    collection_path,
    cronjob_run,
    namespaces,
    object_path,
    services,
    workload_objects,
)
from lab.clusterplan import check_topology, cluster_node, lab_workloads
from lab.clusterrecord import KubeAccess, read_call_logs
from lab.errors import LabError
from lab.kubeapi import KubeApiError, KubeClient
from lab.topology import load_topology
from lab.truth import INTERNET, listen_ports

Progress = Callable[[str], None]
APPLY = "application/apply-patch+yaml"
CORDONED_BY = "lab.callmap.io/cordoned-by"
"""Annotation on a node the churn cordoned: which lab, so ``down`` can undo it."""
STATE_FILE = "cluster-lab.json"
LITERAL_DOMAIN = "callmap-lab.invalid"
DEFAULT_UP_TIMEOUT = 240.0
POLL = 1.0


class ClusterStatus(Protocol):
    """What the lab reads of :meth:`devcluster.cluster.DevCluster.status`."""

    @property
    def running(self) -> bool: ...
    @property
    def kubeconfig(self) -> Path: ...
    @property
    def kafka_bootstrap(self) -> str: ...
    @property
    def nodes(self) -> tuple[str, ...]: ...
    @property
    def images(self) -> Mapping[str, str]: ...
    @property
    def cluster_domain(self) -> str: ...


class Cluster(Protocol):
    """What the lab needs of :class:`devcluster.cluster.DevCluster`."""

    def status(self) -> ClusterStatus: ...
    def set_externals(self, zone: dict[str, list[str]], ports: dict[str, list[int]]) -> None: ...
    def current_callmap_image(self, repo: Path) -> str: ...
    def install_callmap(self, repo: Path, overrides: Mapping[str, Any]) -> str: ...
    def uninstall_callmap(self) -> None: ...
    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str: ...


REPO = Path(__file__).resolve().parent.parent
"""The repository: its ``Dockerfile`` makes the pods' image, its chart installs callmap."""


def dev_cluster() -> Cluster:
    """The development cluster (``callmap dev cluster``)."""
    from devcluster.cluster import DevCluster

    cluster: Cluster = DevCluster.named()
    return cluster


def default_cluster_state_dir(name: str) -> Path:
    return cache_dir() / "lab-cluster" / name


@dataclass(slots=True)
class ClusterLab:
    """One topology on one cluster, and what the lab knows of it."""

    plan: Plan
    state_dir: Path
    cluster: Cluster
    status: ClusterStatus
    access: KubeAccess
    client: KubeClient
    progress: Progress = print
    bindings: dict[str, str] = field(default_factory=dict)
    """Plan pod ``ns/name`` -> the real pod's name (same namespace)."""
    addresses: dict[str, str] = field(default_factory=dict)
    """Plan address a call names -> the cluster's address of the same thing."""
    released: float | None = None
    churn_done: int = 0
    notes: list[str] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        topology: Path,
        state_dir: Path | None = None,
        cluster: Cluster | None = None,
        progress: Progress = print,
    ) -> ClusterLab:
        """The lab for ``topology`` on ``cluster`` (default: the development cluster)."""
        the_plan = plan(load_topology(topology))
        check_topology(the_plan)
        cluster = cluster if cluster is not None else dev_cluster()
        if not cluster.status().running:
            raise LabError("the development cluster is not running (`callmap dev cluster`)")
        cluster.current_callmap_image(REPO)  # the pods run this tree's callers and callmap
        status = cluster.status()
        domain = the_plan.topology.domain
        if status.cluster_domain.strip(".") != domain:
            raise LabError(
                f"the topology's domain is {domain!r}, the cluster's {status.cluster_domain!r}"
            )
        directory = state_dir or default_cluster_state_dir(the_plan.topology.name)
        directory.mkdir(parents=True, exist_ok=True)
        access = KubeAccess.from_kubeconfig(Path(status.kubeconfig), directory / "access")
        return cls(the_plan, directory, cluster, status, access, access.client(), progress)

    # -- paths --

    @property
    def name(self) -> str:
        return self.plan.topology.name

    @property
    def host_dir(self) -> Path:
        return self.state_dir / "host"

    @property
    def log_dir(self) -> Path:
        return self.host_dir / LOG_DIR

    @property
    def record_path(self) -> Path:
        return self.state_dir / "api.jsonl"

    def target(self) -> ClusterTarget:
        return ClusterTarget(
            lab=self.name,
            image=self.status.images["callmap"],
            nodes=tuple(self.status.nodes),
            host_dir=str(self.host_dir),
            addresses=dict(self.addresses),
        )

    # -- up --

    def up(self, hold: bool = True, timeout: float = DEFAULT_UP_TIMEOUT) -> None:
        """Apply the topology and wait until its pods run and their calls work."""
        self._check_namespaces()
        self._check_dual_stack()
        shutil.rmtree(self.host_dir, ignore_errors=True)
        self.log_dir.mkdir(parents=True)
        self.host_dir.chmod(0o755)
        if not hold:
            self.release()
        self.cluster.set_externals(*externals(self.plan))
        deadline = time.monotonic() + timeout
        for manifest in [*namespaces(self.plan), *services(self.plan)]:
            self.apply(manifest)
        for number, wave in enumerate(waves(self.plan)):
            self._map_addresses()
            target = self.target()
            for ref in wave:
                for manifest in workload_objects(self.plan, target, ref):
                    applied = self.apply(manifest)
                    if manifest["kind"] == "CronJob":
                        uid = str(applied["metadata"]["uid"])
                        self.apply(cronjob_run(self.plan, target, ref, uid))
            self.progress(f"wave {number + 1}: {', '.join(wave)} applied")
            for ref in wave:
                pods = self.wait_pods(ref, self.expected_pods(ref), deadline)
                self.bindings |= bind_pods(self.plan, ref, pods, self.status.nodes)
            self.save()
        self.wait_calls(deadline)
        self.save()

    def _check_namespaces(self) -> None:
        ours = {m["metadata"]["name"] for m in namespaces(self.plan)}
        leftovers = []
        for item in self.client.get("/api/v1/namespaces").get("items", []):
            metadata = item["metadata"]
            if metadata["name"] not in ours:
                continue
            if (metadata.get("labels") or {}).get(LAB_LABEL) != self.name:
                raise LabError(
                    f"namespace {metadata['name']} exists on the cluster and is not lab "
                    f"{self.name}'s: the cluster lab does not share namespaces"
                )
            leftovers.append(metadata["name"])
        if leftovers:
            self.progress(f"removing what an earlier run left: {', '.join(sorted(leftovers))}")
            self.down()

    def _check_dual_stack(self) -> None:
        if not self.plan.topology.dual_stack:
            return
        for node in self.client.get("/api/v1/nodes").get("items", []):
            cidrs = node.get("spec", {}).get("podCIDRs") or []
            if any(ipaddress.ip_network(c).version == 6 for c in cidrs):
                return
        raise LabError("the topology is dual-stack and the cluster's pods have no IPv6 range")

    def expected_pods(self, ref: str) -> int:
        workload = self.plan.by_workload[ref]
        if workload.kind == "DaemonSet":
            return 1 if workload.node is not None else len(self.status.nodes)
        return workload.replicas

    def pods_of(self, ref: str) -> list[dict[str, Any]]:
        """The workload's pods on the cluster now, terminating ones left out."""
        namespace, _, name = ref.partition("/")
        answer = self.client.request(
            "GET",
            collection_path("Pod", namespace),
            query={"labelSelector": f"{LAB_LABEL}={self.name},{WORKLOAD_LABEL}={name}"},
        )
        return [p for p in answer.get("items", []) if not p["metadata"].get("deletionTimestamp")]

    def wait_pods(self, ref: str, count: int, deadline: float) -> list[tuple[str, str, float]]:
        """Wait until ``count`` pods of ``ref`` run with an address; ``(name, node, created)``."""
        while True:
            pods = self.pods_of(ref)
            running = [p for p in pods if _running(p)]
            if len(running) >= count:
                return [
                    (p["metadata"]["name"], p["spec"]["nodeName"], _created(p)) for p in running
                ]
            if time.monotonic() > deadline:
                raise LabError(
                    f"{ref}: {len(running)} of {count} pods running in time; "
                    + "; ".join(_pod_problem(p) for p in pods if not _running(p))
                )
            time.sleep(POLL)

    def _map_addresses(self) -> None:
        """Cluster addresses for the plan addresses calls name, as far as they exist now."""
        for address, literal in literal_targets(self.plan).items():
            if address in self.addresses or literal.kind == "other":
                continue
            found: list[str] = []
            if literal.kind == "pod" and literal.holder in self.bindings:
                namespace = literal.holder.partition("/")[0]
                pod = self.client.get(
                    f"{collection_path('Pod', namespace)}/{self.bindings[literal.holder]}"
                )
                found = [i["ip"] for i in pod.get("status", {}).get("podIPs") or []]
            elif literal.kind == "service":
                namespace, _, name = literal.holder.partition("/")
                service = self.client.get(f"{collection_path('Service', namespace)}/{name}")
                found = list(service.get("spec", {}).get("clusterIPs") or [])
            elif literal.kind == "node":
                node_name = cluster_node(self.plan.topology, self.status.nodes, literal.holder)
                node = self.client.get(f"/api/v1/nodes/{node_name}")
                found = [
                    a["address"]
                    for a in node.get("status", {}).get("addresses") or []
                    if a.get("type") == "InternalIP"
                ]
            real = real_address(literal, found)
            if real is not None:
                self.addresses[address] = real
                self.progress(f"{literal.kind} address {address} of the plan is {real} here")

    def wait_calls(self, deadline: float) -> None:
        """Wait until every running call of every live pod has a success in its log."""
        while True:
            missing = self.calls_not_working()
            if not missing:
                return
            if time.monotonic() > deadline:
                raise LabError("calls not working in time: " + "; ".join(missing[:10]))
            time.sleep(POLL)

    def calls_not_working(self) -> list[str]:
        records, _torn = read_call_logs(self.log_dir)
        ok = {(r.pod, r.to, r.port) for r in records if r.ok}
        target = self.target()
        missing = []
        for workload in lab_workloads(self.plan):
            calls = [c for c in self.plan.topology.calls if c.client == workload.ref]
            calls = [c for c in calls if self.released is not None or c.before_capture]
            if not calls:
                continue
            for pod in self.pods_of(workload.ref):
                key = f"{workload.namespace}/{pod['metadata']['name']}"
                for call in calls:
                    to = target.addresses.get(call.to, call.to)
                    if (key, to, call.port) not in ok:
                        missing.append(f"{key} -> {to}:{call.port}")
        return missing

    # -- release, down --

    def release(self) -> float:
        """Let the held calls go (the callers poll for the release file)."""
        self.host_dir.mkdir(parents=True, exist_ok=True)
        (self.host_dir / RELEASE_FILE).touch()
        self.released = time.time()
        self.save()
        return self.released

    def down(self, timeout: float = 180.0) -> list[str]:
        """Delete the lab's namespaces, uncordon what it cordoned; the namespaces deleted."""
        selector = {"labelSelector": f"{LAB_LABEL}={self.name}"}
        names = [
            item["metadata"]["name"]
            for item in self.client.request("GET", "/api/v1/namespaces", query=selector).get(
                "items", []
            )
        ]
        for name in names:
            try:
                self.client.request(
                    "DELETE", f"/api/v1/namespaces/{name}", {"propagationPolicy": "Background"}
                )
            except KubeApiError as exc:
                if exc.status != 404:
                    raise
        uncordon(self.client, self.name)
        deadline = time.monotonic() + timeout
        while names:
            left = self.client.request("GET", "/api/v1/namespaces", query=selector).get("items")
            if not left:
                break
            if time.monotonic() > deadline:
                raise LabError(
                    "namespaces still terminating: "
                    + ", ".join(i["metadata"]["name"] for i in left)
                )
            time.sleep(POLL)
        return names

    # -- API --

    def apply(self, manifest: Manifest, dry_run: bool = False) -> dict[str, Any]:
        return apply(self.client, manifest, dry_run)

    def save(self) -> None:
        document = {
            "name": self.name,
            "topology": self.plan.topology.name,
            "host_dir": str(self.host_dir),
            "record": str(self.record_path),
            "bindings": self.bindings,
            "addresses": self.addresses,
            "released": self.released,
            "churn_done": self.churn_done,
            "notes": self.notes,
        }
        path = self.state_dir / STATE_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=2))
        temporary.replace(path)

    def with_client(self, client: KubeClient) -> ClusterLab:
        """The same lab with another connection (one per thread)."""
        return replace(self, client=client)


def apply(client: KubeClient, manifest: Manifest, dry_run: bool = False) -> dict[str, Any]:
    """Server-side apply of ``manifest``; the object as the server holds it (or would)."""
    query = {"fieldManager": MANAGER, "force": "true", "fieldValidation": "Strict"}
    if dry_run:
        query["dryRun"] = "All"
    try:
        return client.request(
            "PATCH", object_path(manifest), manifest, content_type=APPLY, query=query
        )
    except KubeApiError as exc:
        metadata = manifest["metadata"]
        where = f"{metadata.get('namespace', '')}/{metadata['name']}".lstrip("/")
        raise LabError(f"the cluster refused {manifest['kind']} {where}: {exc}") from None


def uncordon(client: KubeClient, lab: str) -> list[str]:
    """Make schedulable again the nodes lab ``lab`` cordoned; their names."""
    done = []
    for node in client.get("/api/v1/nodes").get("items", []):
        annotations = node["metadata"].get("annotations") or {}
        if annotations.get(CORDONED_BY) == lab:
            client.merge_patch(
                f"/api/v1/nodes/{node['metadata']['name']}",
                {"metadata": {"annotations": {CORDONED_BY: None}}, "spec": {"unschedulable": None}},
            )
            done.append(node["metadata"]["name"])
    return done


def externals(the_plan: Plan) -> tuple[dict[str, list[str]], dict[str, list[int]]]:
    """What the cluster's "internet" must answer: names -> addresses, names -> ports."""
    ports = sorted(listen_ports(the_plan).get(INTERNET, set()))
    zone = {e.name: list(e.ips) for e in the_plan.topology.externals}
    served = {ip for ips in zone.values() for ip in ips}
    for address, literal in literal_targets(the_plan).items():
        if literal.kind == "other" and address not in served:
            zone[f"literal-{_dashed(address)}.{LITERAL_DOMAIN}"] = [address]
    return zone, {name: list(ports) for name in zone}


def _dashed(address: str) -> str:
    return address.replace(".", "-").replace(":", "-")


def _running(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    ready = any(
        s.get("ready") and "running" in (s.get("state") or {})
        for s in status.get("containerStatuses") or []
    )
    return status.get("phase") == "Running" and bool(status.get("podIP")) and ready


def _created(pod: Mapping[str, Any]) -> float:
    stamp = str(pod["metadata"].get("creationTimestamp", ""))
    try:
        return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return 0.0


def _pod_problem(pod: Mapping[str, Any]) -> str:
    status = pod.get("status") or {}
    reasons = [
        f"{state.get('reason')}: {state.get('message', '')}".strip(": ")
        for s in status.get("containerStatuses") or []
        for state in [(s.get("state") or {}).get("waiting") or {}]
        if state
    ]
    conditions = [
        f"{c.get('type')}: {c.get('message')}"
        for c in status.get("conditions") or []
        if c.get("status") != "True" and c.get("message")
    ]
    detail = "; ".join(reasons + conditions) or status.get("phase", "no status yet")
    return f"{pod['metadata']['name']}: {detail}"
