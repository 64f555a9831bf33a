"""How endpoints are named, keyed and sorted in every map output.

One place decides that a workload in the reader's namespace is just its name,
one elsewhere is "name in namespace ns", an external is "name (external)", and
in which order a client's servers are listed. Names are returned raw; each
output escapes them for itself (see :mod:`sinks.escape`). Pure.
"""

from __future__ import annotations

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


def describe(endpoint: Endpoint, namespace: str | None = None) -> str:
    """How ``callmap list`` names a server seen from a client in ``namespace``."""
    match endpoint.type:
        case "workload" | "service":
            name = label(endpoint)
            return (
                name
                if endpoint.namespace == namespace
                else f"{name} in namespace {endpoint.namespace}"
            )
        case "external":
            return f"{label(endpoint)} (external)"
        case "ip":
            return f"{label(endpoint)} (unresolved IP)"
        case "node":
            return f"{label(endpoint)} (node)"
        case _:
            return "kubernetes (API server)"


def heading(endpoint: Endpoint) -> str:
    """How ``callmap list`` names a client."""
    if is_workload(endpoint):
        return f"{label(endpoint)} in namespace {endpoint.namespace}"
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


def sort_key(endpoint: Endpoint, namespace: str | None = None) -> tuple[int, str, str, str]:
    """Servers of a client: same namespace, other namespaces, then the rest, by name."""
    group = _GROUP.get(endpoint.type, 9)
    if group == 1 and endpoint.namespace == namespace:
        group = 0
    return (group, endpoint.namespace or "", label(endpoint), endpoint.kind or "")


def client_key(endpoint: Endpoint) -> tuple[int, str, str, str]:
    """Clients: workloads by namespace and name, then the rest."""
    return sort_key(endpoint, None)


def edge_sort_key(
    edge: Edge,
) -> tuple[str, tuple[int, str, str, str], tuple[int, str, str, str], str]:
    """The canonical order of edges in every output."""
    return (
        edge.cluster,
        client_key(edge.client),
        sort_key(edge.server, edge.client.namespace),
        edge.edge_id,
    )


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
