"""How endpoints are named, keyed and sorted in every map output.

One place decides that a workload in the reader's namespace is just its name,
one elsewhere is "name in namespace ns", an external is "name (external)", and
in which order a client's servers are listed. Names are returned raw; each
output escapes them for itself (see :mod:`sinks.escape`).

Clusters: :func:`cluster_of` is the one rule for which cluster an endpoint
lives in, on a cluster's own edges (the edge's ``cluster``) and on an
aggregator's global edges (the endpoint's own ``cluster``) alike; externals
live in none. Every output asks it, and names clusters only when what it shows
spans more than one (:func:`clusters_in`).

Ports: :func:`port_labels` is the one way every text output (the map's and
the SIEM feeds') writes a server's ports: TCP ports as bare numbers, as they
always were, then UDP ports as ``53/udp``, so a TCP-only edge reads as before
and a UDP port is never mistaken for a TCP one. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from callmap.wire import Edge, Endpoint

# The order of servers under a client: its own namespace first, then other
# namespaces, then what is not a workload.
_GROUP = {"workload": 1, "service": 1, "apiserver": 2, "node": 3, "external": 4, "ip": 5}

APISERVER_NAME = "kubernetes"
APISERVER_NAMESPACE = "default"


def is_workload(endpoint: Endpoint) -> bool:
    """A workload or a service with nothing known behind it: something with pods."""
    return endpoint.type in ("workload", "service")


def identity(endpoint: Endpoint) -> Endpoint:
    """The endpoint as one node of the map: a workload whatever service reached it,
    an external by its DNS name whatever address it had."""
    if endpoint.type == "workload" and endpoint.service is not None:
        return msgspec.structs.replace(endpoint, service=None)
    if endpoint.type == "external" and endpoint.dns_name and endpoint.ip is not None:
        return msgspec.structs.replace(endpoint, ip=None)
    return endpoint


def cluster_of(edge: Edge, endpoint: Endpoint) -> str | None:
    """The cluster ``endpoint`` (a side of ``edge``) lives in; None for an external.

    Global edges name each side's cluster on the endpoint; a cluster's own
    edges leave it out, and the edge's ``cluster`` applies to both sides.
    """
    if endpoint.type == "external":
        return None
    return endpoint.cluster or edge.cluster


def in_cluster(edge: Edge, endpoint: Endpoint) -> Endpoint:
    """``endpoint`` carrying the cluster it lives in (see :func:`cluster_of`)."""
    cluster = cluster_of(edge, endpoint)
    if endpoint.cluster == cluster:
        return endpoint
    return msgspec.structs.replace(endpoint, cluster=cluster)


def placed(edge: Edge, endpoint: Endpoint) -> Endpoint:
    """The endpoint as one node of a map of many clusters: :func:`identity` in its cluster."""
    return identity(in_cluster(edge, endpoint))


def shown(edge: Edge, endpoint: Endpoint, several: bool) -> Endpoint:
    """The endpoint as a map node: in its cluster when the map spans ``several``, else in none.

    A map of one cluster names no cluster, whether its edges were a cluster's
    own or global ones.
    """
    if several:
        return placed(edge, endpoint)
    if endpoint.cluster is not None:
        endpoint = msgspec.structs.replace(endpoint, cluster=None)
    return identity(endpoint)


def clusters_in(edges: Iterable[Edge]) -> set[str]:
    """Every cluster an endpoint of ``edges`` lives in."""
    found: set[str] = set()
    for edge in edges:
        for endpoint in (edge.client, edge.server):
            cluster = cluster_of(edge, endpoint)
            if cluster is not None:
                found.add(cluster)
    return found


def touches(edge: Edge, clusters: frozenset[str]) -> bool:
    """Whether the client or the server of ``edge`` lives in one of ``clusters``."""
    return cluster_of(edge, edge.client) in clusters or cluster_of(edge, edge.server) in clusters


def where(endpoint: Endpoint) -> str:
    """`` (cluster NAME)`` for an endpoint carrying its cluster, else nothing."""
    return f" (cluster {endpoint.cluster})" if endpoint.cluster is not None else ""


def label(endpoint: Endpoint) -> str:
    """The endpoint's own name, whatever its type."""
    match endpoint.type:
        case "workload" | "service" | "node":
            return endpoint.name or "?"
        case "external":
            return endpoint.dns_name or endpoint.ip or "?"
        case "ip":
            return endpoint.ip or "?"
        case _:
            return APISERVER_NAME


def describe(endpoint: Endpoint, namespace: str | None = None, cluster: str | None = None) -> str:
    """How ``callmap list`` names a server seen from a client in ``namespace`` (of ``cluster``).

    An endpoint carrying its cluster (a map of several clusters) is named with
    it: ``api in namespace shop (cluster west)``.
    """
    match endpoint.type:
        case "workload" | "service":
            name = label(endpoint)
            here = endpoint.namespace == namespace and endpoint.cluster in (None, cluster)
            return (name if here else f"{name} in namespace {endpoint.namespace}") + where(endpoint)
        case "external":
            return f"{label(endpoint)} (external)"
        case "ip":
            return f"{label(endpoint)} (unresolved IP){where(endpoint)}"
        case "node":
            return f"{label(endpoint)} (node){where(endpoint)}"
        case _:
            return f"kubernetes (API server){where(endpoint)}"


def heading(endpoint: Endpoint) -> str:
    """How ``callmap list`` names a client."""
    if is_workload(endpoint):
        return f"{label(endpoint)} in namespace {endpoint.namespace}{where(endpoint)}"
    return describe(endpoint)


def qualified(endpoint: Endpoint) -> str:
    """A one-line identity: ``ns/kind/name``, ``external:name``, ``ip:addr``, ..."""
    match endpoint.type:
        case "workload":
            return f"{endpoint.namespace}/{endpoint.kind or 'Workload'}/{endpoint.name}"
        case "service":
            return f"{endpoint.namespace}/Service/{endpoint.name}"
        case "apiserver":
            return "apiserver"
        case _:
            return f"{endpoint.type}:{label(endpoint)}"


SortKey = tuple[int, str, str, str, str]


def port_labels(edge: Edge) -> list[str]:
    """``edge``'s TCP ports, then its UDP ports as ``N/udp``, each in the edge's order."""
    return [str(port) for port in edge.ports] + [f"{port}/udp" for port in edge.udp_ports]


def sort_key(
    endpoint: Endpoint, namespace: str | None = None, cluster: str | None = None
) -> SortKey:
    """Servers of a client: same namespace, other namespaces, then the rest, by name.

    An endpoint carrying a cluster other than ``cluster`` is never in the same namespace.
    """
    group = _GROUP.get(endpoint.type, 9)
    if group == 1 and endpoint.namespace == namespace and endpoint.cluster in (None, cluster):
        group = 0
    return (
        group,
        endpoint.namespace or "",
        label(endpoint),
        endpoint.kind or "",
        endpoint.cluster or "",
    )


def client_key(endpoint: Endpoint) -> SortKey:
    """Clients: workloads by namespace and name, then the rest."""
    return sort_key(endpoint, None)


def server_key(edge: Edge) -> SortKey:
    """The order of an edge among its client's edges."""
    return sort_key(edge.server, edge.client.namespace, cluster_of(edge, edge.client))


def edge_sort_key(edge: Edge) -> tuple[str, SortKey, SortKey, str]:
    """The canonical order of edges in every output."""
    return (edge.cluster, client_key(edge.client), server_key(edge), edge.edge_id)


def names(endpoint: Endpoint) -> set[str]:
    """Every name a filter may use for this endpoint (``--client``, ``--server``)."""
    found = {
        value
        for value in (endpoint.name, endpoint.dns_name, endpoint.ip, endpoint.service)
        if value
    }
    if endpoint.namespace:
        found |= {
            f"{endpoint.namespace}/{value}" for value in (endpoint.name, endpoint.service) if value
        }
    if endpoint.type == "apiserver":
        found.add(APISERVER_NAME)
    return found
