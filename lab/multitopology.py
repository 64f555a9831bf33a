"""Multi-cluster topologies: one file, several clusters, split into one topology each. Pure.

A topology with a ``clusters:`` list (format in ``docs/lab.md``) declares
several clusters, each with its nodes, the clusters whose ranges it shares
(``overlap_with``) and the clusters whose pods reach its pod IPs (``peers``;
symmetric, and overlapping clusters cannot peer). Workloads and services take
``cluster: NAME``; a call's ``from`` and a churn's ``delete``/``ip_to`` are
``CLUSTER/ns/workload``. A call's ``to`` is any single-cluster form (resolved
in the caller's cluster), ``<svc>.<ns>.svc.clusterset.local`` (a service with
``export: true`` in one or more clusters, all of them the caller's own or its
peers), or a pod IP of a peer cluster. ``stop_mirror`` entries stop one
cluster's mirroring to the hub for a while.

:func:`parse_multi` checks all of that and gives each cluster its own
:class:`~lab.topology.Topology` (lab name ``<name>-<cluster>``), which the
single-cluster lab builds unchanged, plus what only a multi-cluster lab has:
an address range slot per overlap group, the peers' ranges its fabric routes,
the clusterset services it imports (virtual IP to the exporters' pods), and
its calls to other clusters marked ``cross_cluster``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeGuard

from lab.addressing import CLUSTERSET_DOMAIN, Plan, plan
from lab.errors import TopologyError
from lab.fields import keys, label, list_of, mapping, string
from lab.ranges import MAX_SLOT, Ranges
from lab.topology import load_document, load_topology, parse_topology
from lab.topologyrecords import Import, Topology

MIRROR_STOP_KEYS = {"cluster", "at", "for"}


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    name: str
    nodes: tuple[str, ...]
    peers: frozenset[str]
    overlap_with: frozenset[str]
    slot: int


@dataclass(frozen=True, slots=True)
class MirrorStop:
    """``stop_mirror``: the cluster's mirroring stops at ``at`` seconds for ``seconds``."""

    cluster: str
    at: float
    seconds: float


@dataclass(frozen=True, slots=True)
class CrossCall:
    """A call from one cluster to another's service or pod, for the global truth."""

    cluster: str
    client: str
    """``ns/workload`` in ``cluster``."""
    to: str
    port: int
    servers: tuple[str, ...]
    """``CLUSTER/ns/workload`` of every workload the call may reach."""


@dataclass(frozen=True, slots=True)
class MultiTopology:
    name: str
    clusters: tuple[ClusterSpec, ...]
    members: Mapping[str, Topology]
    """Each cluster's own topology, ready for the single-cluster lab."""
    cross_calls: tuple[CrossCall, ...]
    stop_mirror: tuple[MirrorStop, ...]

    def member(self, cluster: str) -> Topology:
        try:
            return self.members[cluster]
        except KeyError:
            raise TopologyError(f"{self.name}: no cluster {cluster!r}") from None

    def plans(self) -> dict[str, Plan]:
        return {name: plan(topology) for name, topology in self.members.items()}


def is_multi(document: object) -> TypeGuard[Mapping[str, Any]]:
    """Whether a loaded topology document declares several clusters."""
    return isinstance(document, Mapping) and "clusters" in document


def parse_multi(document: str | Mapping[str, Any], source: str = "topology") -> MultiTopology:
    """Validate a multi-cluster topology and split it (see the module docstring)."""
    root = mapping(load_document(document, source), source)
    keys(
        root,
        source,
        {"name", "clusters"},
        {
            "domain",
            "dual_stack",
            "workloads",
            "services",
            "externals",
            "calls",
            "churn",
            "dns_upstream",
            "stop_mirror",
        },
    )
    name = string(root, "name", source)
    clusters = _clusters(root, source)
    by_name = {c.name: c for c in clusters}
    shared = {
        k: root[k] for k in ("domain", "dual_stack", "externals", "dns_upstream") if k in root
    }
    split = {c.name: _Member() for c in clusters}
    for key in ("workloads", "services"):
        for i, raw in enumerate(list_of(root, key, source, [])):
            where = f"{source}.{key}[{i}]"
            entry = dict(mapping(raw, where))
            cluster = _cluster_of(entry.pop("cluster", None), by_name, f"{where}.cluster")
            getattr(split[cluster], key).append(entry)
    for i, raw in enumerate(list_of(root, "calls", source, [])):
        where = f"{source}.calls[{i}]"
        entry = dict(mapping(raw, where))
        cluster, entry["from"] = _split_ref(entry.get("from"), by_name, f"{where}.from")
        split[cluster].calls.append((where, entry))
    for i, raw in enumerate(list_of(root, "churn", source, [])):
        where = f"{source}.churn[{i}]"
        entry = dict(mapping(raw, where))
        cluster, entry["delete"] = _split_ref(entry.get("delete"), by_name, f"{where}.delete")
        if "ip_to" in entry:
            other, entry["ip_to"] = _split_ref(entry["ip_to"], by_name, f"{where}.ip_to")
            if other != cluster:
                raise TopologyError(f"{where}.ip_to: must be in the same cluster as delete")
        split[cluster].churn.append(entry)
    stops = tuple(
        _mirror_stop(raw, f"{source}.stop_mirror[{i}]", by_name)
        for i, raw in enumerate(list_of(root, "stop_mirror", source, []))
    )
    # A first pass without cross-cluster calls gives every cluster's addresses.
    bases: dict[str, Topology] = {}
    for spec in clusters:
        member = split[spec.name]
        local = [c for c in member.calls if _local_target(c[1].get("to"))]
        bases[spec.name] = replace(
            parse_topology(
                member.document(name, spec, shared, [e for _, e in local]),
                source=f"{source}[{spec.name}]",
            ),
            slot=spec.slot,
        )
    base_plans = {n: plan(t) for n, t in bases.items()}
    cross: list[CrossCall] = []
    listens: dict[str, dict[str, set[int]]] = {c.name: {} for c in clusters}
    for spec in clusters:
        for where, entry in split[spec.name].calls:
            target = _target(entry, where, spec, by_name, base_plans)
            if target is None:
                continue
            if entry.get("protocol", "tcp") != "tcp":
                raise TopologyError(f"{where}.protocol: a call to another cluster is tcp only")
            cross.append(target)
            for server in target.servers:
                server_cluster, _, ref = server.partition("/")
                listens[server_cluster].setdefault(ref, set()).add(target.port)
    members: dict[str, Topology] = {}
    for spec in clusters:
        member = split[spec.name]
        member.add_listens(listens[spec.name])
        topology = parse_topology(
            member.document(name, spec, shared, [e for _, e in member.calls]),
            source=f"{source}[{spec.name}]",
        )
        crossing = {(c.client, c.to, c.port) for c in cross if c.cluster == spec.name}
        calls = tuple(
            replace(call, cross_cluster=(call.client, call.to, call.port) in crossing)
            for call in topology.calls
        )
        peer_ranges = tuple(
            str(network)
            for peer in sorted(spec.peers)
            for network in Ranges(by_name[peer].slot).routed
        )
        imports = _imports(spec, clusters, base_plans)
        members[spec.name] = replace(
            topology, calls=calls, slot=spec.slot, peer_ranges=peer_ranges, imports=imports
        )
    return MultiTopology(name, clusters, members, tuple(cross), stops)


class _Member:
    """One cluster's entries of the multi-cluster document, as single-cluster entries."""

    def __init__(self) -> None:
        self.workloads: list[dict[str, Any]] = []
        self.services: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.churn: list[dict[str, Any]] = []

    def add_listens(self, ports: Mapping[str, set[int]]) -> None:
        """Workloads called from other clusters listen on those ports too."""
        for workload in self.workloads:
            ref = f"{workload.get('namespace')}/{workload.get('name')}"
            extra = sorted(ports.get(ref, set()) - set(workload.get("ports", [])))
            if extra:
                workload["ports"] = [*workload.get("ports", []), *extra]

    def document(
        self,
        name: str,
        spec: ClusterSpec,
        shared: Mapping[str, Any],
        calls: Sequence[Mapping[str, Any]],
    ) -> dict[str, Any]:
        return {
            **shared,
            "name": f"{name}-{spec.name}",
            "cluster": spec.name,
            "nodes": list(spec.nodes),
            "workloads": self.workloads,
            "services": self.services,
            "calls": list(calls),
            "churn": self.churn,
        }


def _clusters(root: Mapping[str, Any], source: str) -> tuple[ClusterSpec, ...]:
    entries = list_of(root, "clusters", source, [])
    if not entries:
        raise TopologyError(f"{source}.clusters: needs at least one cluster")
    raw_specs: list[tuple[str, tuple[str, ...], set[str], set[str]]] = []
    for i, value in enumerate(entries):
        where = f"{source}.clusters[{i}]"
        raw = mapping(value, where)
        keys(raw, where, {"name"}, {"nodes", "overlap_with", "peers"})
        cluster = label(raw["name"], f"{where}.name")
        nodes = tuple(
            label(v, f"{where}.nodes[{j}]")
            for j, v in enumerate(list_of(raw, "nodes", where, ["node-a"]))
        )
        overlap_with, peer_names = (
            {label(v, f"{where}.{key}[{j}]") for j, v in enumerate(list_of(raw, key, where, []))}
            for key in ("overlap_with", "peers")
        )
        raw_specs.append((cluster, nodes, overlap_with, peer_names))
    names = [spec[0] for spec in raw_specs]
    if len(set(names)) != len(names):
        raise TopologyError(f"{source}.clusters: a cluster name is declared twice")
    overlaps: dict[str, set[str]] = {n: set() for n in names}
    peers: dict[str, set[str]] = {n: set() for n in names}
    for cluster, _nodes, overlap_with, peer_names in raw_specs:
        for relation, others, key in (
            (overlaps, overlap_with, "overlap_with"),
            (peers, peer_names, "peers"),
        ):
            for other in others:
                if other not in overlaps:
                    raise TopologyError(f"{source}.clusters[{cluster}].{key}: no cluster {other!r}")
                if other == cluster:
                    raise TopologyError(f"{source}.clusters[{cluster}].{key}: names itself")
                relation[cluster].add(other)
                relation[other].add(cluster)  # both relations are symmetric
    slots = _slots(names, overlaps)
    for cluster in names:
        same = {o for o in names if o != cluster and slots[o] == slots[cluster]}
        clash = peers[cluster] & same
        if clash:
            raise TopologyError(
                f"{source}.clusters[{cluster}]: overlaps {', '.join(sorted(clash))} "
                "(same pod and service ranges), so they cannot be peers"
            )
    return tuple(
        ClusterSpec(
            cluster, nodes, frozenset(peers[cluster]), frozenset(overlaps[cluster]), slots[cluster]
        )
        for cluster, nodes, _o, _p in raw_specs
    )


def _slots(names: Sequence[str], overlaps: Mapping[str, set[str]]) -> dict[str, int]:
    """One range slot per group of clusters that overlap (directly or through another)."""
    slots: dict[str, int] = {}
    for cluster in names:
        if cluster in slots:
            continue
        slot = len(set(slots.values()))
        if slot > MAX_SLOT:
            raise TopologyError(f"clusters: more than {MAX_SLOT + 1} address ranges")
        stack = [cluster]
        while stack:
            current = stack.pop()
            if current not in slots:
                slots[current] = slot
                stack += sorted(overlaps[current])
    return slots


def _cluster_of(value: object, clusters: Mapping[str, ClusterSpec], where: str) -> str:
    if not isinstance(value, str) or value not in clusters:
        raise TopologyError(f"{where}: {value!r} must be one of the clusters {sorted(clusters)}")
    return value


def _split_ref(value: object, clusters: Mapping[str, ClusterSpec], where: str) -> tuple[str, str]:
    """``CLUSTER/ns/workload`` -> (cluster, ``ns/workload``)."""
    if not isinstance(value, str) or value.count("/") != 2:
        raise TopologyError(f"{where}: {value!r} must be CLUSTER/namespace/workload")
    cluster, _, rest = value.partition("/")
    return _cluster_of(cluster, clusters, where), rest


def _mirror_stop(value: object, where: str, clusters: Mapping[str, ClusterSpec]) -> MirrorStop:
    raw = mapping(value, where)
    keys(raw, where, MIRROR_STOP_KEYS, set())
    numbers = []
    for key in ("at", "for"):
        number = raw[key]
        if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
            raise TopologyError(f"{where}.{key}: {number!r} must be seconds (at least 0)")
        numbers.append(float(number))
    return MirrorStop(_cluster_of(raw["cluster"], clusters, f"{where}.cluster"), *numbers)


def _local_target(to: object) -> bool:
    """Whether a call's ``to`` may stay in the caller's cluster (decided fully later)."""
    if not isinstance(to, str):
        return True  # the single-cluster parser reports it
    text = to.strip().rstrip(".").lower()
    if text.endswith("." + CLUSTERSET_DOMAIN):
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return True
    return False  # an address: which cluster holds it is decided with the plans


def _target(
    entry: Mapping[str, Any],
    where: str,
    spec: ClusterSpec,
    clusters: Mapping[str, ClusterSpec],
    plans: Mapping[str, Plan],
) -> CrossCall | None:
    """The call as a :class:`CrossCall` when it leaves its cluster; None when it does not."""
    to = str(entry.get("to", "")).strip().rstrip(".").lower()
    client = str(entry["from"])
    port = entry.get("port")
    if not isinstance(port, int):
        return None  # the member's own parser reports it
    reachable = {spec.name, *spec.peers}
    if to.endswith("." + CLUSTERSET_DOMAIN):
        labels = to[: -len(CLUSTERSET_DOMAIN) - 1].split(".")
        if len(labels) != 3 or labels[2] != "svc":
            raise TopologyError(
                f"{where}.to: {to!r} must be <service>.<namespace>.svc.{CLUSTERSET_DOMAIN}"
            )
        service, namespace = labels[0], labels[1]
        exporters = _exporters(plans, namespace, service)
        if not exporters:
            raise TopologyError(f"{where}.to: no cluster exports {namespace}/{service}")
        unreachable = sorted(set(exporters) - reachable)
        if unreachable:
            raise TopologyError(
                f"{where}.to: {to!r} is exported by {', '.join(unreachable)}, which "
                f"{spec.name} does not peer with"
            )
        servers = tuple(
            f"{cluster}/{ref}"
            for cluster, svc in sorted(exporters.items())
            for ref in svc.workloads
        )
        if any(port not in (p.port for p in svc.ports) for svc in exporters.values()):
            raise TopologyError(f"{where}.port: {port} is not a port of {namespace}/{service}")
        return CrossCall(spec.name, client, to, port, servers)
    try:
        address = ipaddress.ip_address(to)
    except ValueError:
        return None
    for other, other_spec in clusters.items():
        if other_spec.slot == spec.slot:
            continue  # the caller's own ranges (or an overlapping cluster's: the same)
        ranges = Ranges(other_spec.slot).routed
        if not any(address in network for network in ranges):
            continue
        if other not in spec.peers:
            raise TopologyError(
                f"{where}.to: {to} is an address of {other}, which {spec.name} does not peer with"
            )
        holders = [p for p in plans[other].pods if to in p.ips and not p.host_network]
        if not holders:
            raise TopologyError(
                f"{where}.to: {to} is no pod of {other} (a service IP is translated only "
                f"inside its own cluster: call its clusterset name)"
            )
        return CrossCall(spec.name, client, to, port, (f"{other}/{holders[0].ref}",))
    return None


def _exporters(plans: Mapping[str, Plan], namespace: str, service: str) -> dict[str, Any]:
    found = {}
    for cluster, the_plan in plans.items():
        svc = the_plan.service(namespace, service)
        if svc is not None and svc.exported:
            if svc.type != "ClusterIP":
                raise TopologyError(
                    f"{cluster}: {namespace}/{service}: only ClusterIP services are exported here"
                )
            found[cluster] = svc
    return found


def _imports(
    spec: ClusterSpec,
    clusters: Sequence[ClusterSpec],
    plans: Mapping[str, Plan],
) -> tuple[Import, ...]:
    """The clusterset services ``spec`` reaches: every exporter is itself or a peer."""
    reachable = {spec.name, *spec.peers}
    keys_: dict[tuple[str, str], None] = {}
    for cluster in clusters:
        for svc in plans[cluster.name].services:
            if svc.exported:
                keys_[(svc.namespace, svc.name)] = None
    result = []
    for namespace, name in keys_:
        exporters = _exporters(plans, namespace, name)
        if not set(exporters) <= reachable:
            continue
        backends = tuple(
            (f"{cluster}/{pod.key}", ip)
            for cluster, svc in sorted(exporters.items())
            for pod in plans[cluster].pods
            if pod.ref in svc.workloads
            for ip in pod.ips
            if ipaddress.ip_address(ip).version == 4
        )
        tcp = (p.port for svc in exporters.values() for p in svc.ports if p.protocol == "TCP")
        ports = tuple(sorted(set(tcp)))
        result.append(Import(namespace, name, ports, backends))
    return tuple(result)


def read_document(path: str | Path) -> object:
    """A topology file's document, loaded."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TopologyError(f"{path}: {exc.strerror}") from None
    return load_document(text, str(path))


def load_multi(path: str | Path) -> MultiTopology:
    """Read and validate a multi-cluster topology file."""
    document = read_document(path)
    if not isinstance(document, Mapping):
        raise TopologyError(f"{path}: must be a mapping")
    return parse_multi(document, source=str(path))


def load_member(path: str | Path, cluster: str | None) -> Topology:
    """One cluster's topology of a multi-cluster file, or a single-cluster file's (None)."""
    if cluster is None:
        return load_topology(path)
    return load_multi(path).member(cluster)
