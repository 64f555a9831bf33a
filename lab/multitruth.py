"""The global truths of a multi-cluster lab: every cluster's, named with its cluster. Pure.

Both of the single-cluster lab's truths are kept, per cluster, and prefixed
with the cluster (``east/shop/frontend``, ``node:east/node-a``; externals and
bare IPs stay ``external:NAME`` and ``ip:ADDRESS``), which is how
:func:`lab.compare.endpoint_text` names a global edge's endpoints:

- by the plan (:func:`global_truth`): each cluster's :func:`lab.truth.expected_edges`,
  plus every call to another cluster, to each workload it may reach
  (:class:`~lab.multitopology.CrossCall`: every exporter's workloads for a
  clusterset name, the pod's workload for a peer's pod IP);
- by the callers' logs (:func:`global_call_truth`): each cluster's
  :func:`lab.calltruth.lab_call_truth` over its calls inside the cluster, and
  for calls to another cluster, the pod that answered (``pong ns/pod``), found
  among every cluster's pods (pod names carry their lab's name, so they are
  unique across the clusters).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from lab.addressing import Plan
from lab.calltruth import lab_call_truth, last_calls
from lab.clustertruth import CallRecord, ClusterTruth, TrueEdge
from lab.fields import is_address
from lab.inventory import PodLife
from lab.multitopology import MultiTopology
from lab.topologyrecords import DNS_NAMESPACE, DNS_WORKLOAD
from lab.truth import ExpectedEdge, Truth, expected_edges, prefixed


def global_truth(multi: MultiTopology, plans: Mapping[str, Plan]) -> Truth:
    """The edges every cluster's plan and the calls between clusters make."""
    edges: set[ExpectedEdge] = set()
    tolerated: set[ExpectedEdge] = set()
    for cluster, the_plan in plans.items():
        truth = expected_edges(the_plan)
        edges.update(_prefixed_edge(e, cluster) for e in truth.edges)
        tolerated.update(_prefixed_edge(e, cluster) for e in truth.tolerated)
    for call in multi.cross_calls:
        client = f"{call.cluster}/{call.client}"
        edges.update(ExpectedEdge(client, server) for server in call.servers)
        if not is_address(call.to):
            tolerated.add(ExpectedEdge(client, f"{call.cluster}/{DNS_NAMESPACE}/{DNS_WORKLOAD}"))
    return Truth(frozenset(edges), frozenset(tolerated - edges))


@dataclass(frozen=True, slots=True)
class GlobalCalls:
    """What every cluster's callers logged, as the global map names it."""

    truth: ClusterTruth
    last: dict[ExpectedEdge, float]
    """When each pair was last called successfully."""


def global_calls(
    multi: MultiTopology,
    plans: Mapping[str, Plan],
    lives: Mapping[str, Sequence[PodLife]],
    records: Mapping[str, Sequence[CallRecord]],
    capture_started: float | None,
) -> GlobalCalls:
    """The call truth and the last calls of every pair, over every cluster's logs."""
    owners = _owners(plans)
    truth = global_call_truth(multi, plans, lives, records, capture_started)
    last: dict[ExpectedEdge, float] = {}

    def called(pair: ExpectedEdge, t: float) -> None:
        last[pair] = max(last.get(pair, t), t)

    for cluster, the_plan in plans.items():
        local, crossing = _split(multi, cluster, records.get(cluster, ()), owners)
        for (client, server), t in last_calls(
            the_plan, lives.get(cluster, ()), local, capture_started
        ).items():
            called(ExpectedEdge(prefixed(client, cluster), prefixed(server, cluster)), t)
        for client, record in crossing:
            edge = _answered(cluster, client, record, owners)
            if edge is not None:
                called(ExpectedEdge(edge.client, edge.server), record.t)
    return GlobalCalls(truth, last)


def global_call_truth(
    multi: MultiTopology,
    plans: Mapping[str, Plan],
    lives: Mapping[str, Sequence[PodLife]],
    records: Mapping[str, Sequence[CallRecord]],
    capture_started: float | None,
) -> ClusterTruth:
    """The edges the logged calls make, every cluster's, as the plans explain them."""
    owners = _owners(plans)
    edges: set[TrueEdge] = set()
    tolerated: set[TrueEdge] = set()
    notes: list[str] = []
    count = 0
    for cluster, the_plan in plans.items():
        local, crossing = _split(multi, cluster, records.get(cluster, ()), owners)
        count += len(local) + len(crossing)
        for client, record in crossing:
            edge = _answered(cluster, client, record, owners)
            if edge is None:
                continue
            early = capture_started is not None and record.t < capture_started
            (tolerated if early else edges).add(edge)
        truth = lab_call_truth(the_plan, lives.get(cluster, ()), local, capture_started)
        edges.update(_prefixed_true(e, cluster) for e in truth.edges)
        tolerated.update(_prefixed_true(e, cluster) for e in truth.tolerated)
        notes += [f"{cluster}: {note}" for note in truth.notes]
    return ClusterTruth(frozenset(edges), frozenset(tolerated - edges), tuple(notes), count)


def _owners(plans: Mapping[str, Plan]) -> dict[str, tuple[str, str]]:
    """Every pod's ``ns/name`` -> (its cluster, its workload): pod names carry the lab's name."""
    return {pod.key: (cluster, pod.ref) for cluster, p in plans.items() for pod in p.all_pods}


def _split(
    multi: MultiTopology,
    cluster: str,
    records: Iterable[CallRecord],
    owners: Mapping[str, tuple[str, str]],
) -> tuple[list[CallRecord], list[tuple[str, CallRecord]]]:
    """A cluster's records: calls inside it, and (client workload, record) of the others."""
    crossing = {(c.client, c.to) for c in multi.cross_calls if c.cluster == cluster}
    local: list[CallRecord] = []
    across: list[tuple[str, CallRecord]] = []
    for record in records:
        client = owners.get(record.pod)
        if client is not None and client[0] == cluster and (client[1], record.to) in crossing:
            across.append((client[1], record))
        else:
            local.append(record)
    return local, across


def _answered(
    cluster: str, client: str, record: CallRecord, owners: Mapping[str, tuple[str, str]]
) -> TrueEdge | None:
    """A call to another cluster: client to the workload of the pod that answered."""
    if not record.ok or record.peer is None or not record.peer.startswith("pong "):
        return None
    server = owners.get(record.peer.removeprefix("pong ").strip())
    if server is None:
        return None
    return TrueEdge(f"{cluster}/{client}", f"{server[0]}/{server[1]}", record.port, record.protocol)


def _prefixed_edge(edge: ExpectedEdge, cluster: str) -> ExpectedEdge:
    return ExpectedEdge(prefixed(edge.client, cluster), prefixed(edge.server, cluster))


def _prefixed_true(edge: TrueEdge, cluster: str) -> TrueEdge:
    client, server = prefixed(edge.client, cluster), prefixed(edge.server, cluster)
    return TrueEdge(client, server, edge.port, edge.protocol)
