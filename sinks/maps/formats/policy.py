"""What every policy and intent export shares: grouping, ports, metadata, warnings.

A policy covers one workload and holds *every* live peer of it (see
:mod:`sinks.maps.filters`). Ports are the server ports the edge saw; when service
identities are known, a service port is translated to the pods' target port,
which is what a NetworkPolicy matches after kube-proxy's DNAT.
:class:`PolicyBuilder` holds what the NetworkPolicy and Cilium exports do
alike, so that each states only how it writes a peer and a rule.

UDP ports (``Edge.udp_ports``) are allowed next to the TCP ones, each with its
protocol; an edge seen on UDP ports only is not an edge "seen without ports"
and never opens every port.

Policies are per cluster: :func:`policy_cluster` picks it (``--cluster``, or
the only cluster the edges hold), only that cluster's workloads get a policy,
and a peer in another cluster (on global edges) is written in the form the
format has for it, or left out, warned about and counted in
:attr:`Export.counts`. Pure.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from callmap.errors import ConfigError
from callmap.wire import Edge, Endpoint, ServiceIdentity
from sinks.endpoints import cluster_of, clusters_in, in_cluster, placed, qualified
from sinks.maps.filters import MapFilter
from sinks.maps.formats.labels import LabelBook

MANAGED_BY = {"app.kubernetes.io/managed-by": "callmap"}
NAMESPACE_LABEL = "kubernetes.io/metadata.name"

Port = int | str
Protocol = str
"""``"TCP"`` or ``"UDP"``, as Kubernetes and Cilium spell them."""
ProtocolPort = tuple[Protocol, Port]
PROTOCOLS: tuple[Protocol, ...] = ("TCP", "UDP")
"""In the order a rule lists them: TCP first, so TCP-only rules read as they always did."""
OptionsT = TypeVar("OptionsT")


@dataclass(slots=True)
class Export:
    """Kubernetes objects to write, and what could not be expressed in them."""

    documents: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    """Peers by what became of them: ``cross_cluster_peers`` (written in the form the
    format has for another cluster), ``cross_cluster_left_out`` (no form for it)."""


class PortMap:
    """Service port -> the pods' target port, per protocol, from service identities."""

    def __init__(self, services: Iterable[ServiceIdentity] = ()) -> None:
        self._targets: dict[tuple[str, str, str, Protocol, int], Port] = {}
        for service in services:
            for port in service.ports:
                protocol = port.protocol.upper()
                if protocol not in PROTOCOLS:
                    continue
                target = port.target_port if port.target_port not in (None, "") else port.port
                assert target is not None
                key = (service.cluster, service.namespace, service.name, protocol, port.port)
                self._targets[key] = target

    def ports(self, edge: Edge, protocol: Protocol = "TCP") -> list[Port]:
        """The ``protocol`` ports a policy for ``edge``'s server allows: numbers first,
        then names."""
        server = edge.server
        found: set[Port] = set()
        for port in edge.udp_ports if protocol == "UDP" else edge.ports:
            cluster = cluster_of(edge, server) or ""
            key = (cluster, server.namespace or "", server.service or "", protocol, port)
            found.add(self._targets.get(key, port) if server.service else port)
        return sorted(found, key=port_key)


def port_key(port: Port) -> tuple[bool, int, str]:
    """Numbers in numeric order, then named ports by name."""
    return (isinstance(port, str), port if isinstance(port, int) else 0, str(port))


def protocol_port_key(port: ProtocolPort) -> tuple[int, tuple[bool, int, str]]:
    """TCP before UDP, then as :func:`port_key` orders them."""
    return (PROTOCOLS.index(port[0]), port_key(port[1]))


def policy_cluster(edges: Iterable[Edge], selection: MapFilter) -> str | None:
    """The one cluster policies are written for: the one ``--cluster`` names, else
    the only one the edges hold."""
    if len(selection.clusters) > 1:
        raise ConfigError("policies are per cluster: give one --cluster, not several")
    if selection.clusters:
        return next(iter(selection.clusters))
    clusters = sorted(clusters_in(edges))
    if len(clusters) > 1:
        raise ConfigError(
            f"the edges span clusters {', '.join(clusters)}: choose one with --cluster"
        )
    return clusters[0] if clusters else None


def by_server(edges: Iterable[Edge], selection: MapFilter) -> dict[Endpoint, list[Edge]]:
    """Covered servers (placed in their cluster), each with every live edge into it."""
    edges = list(edges)
    covered = selection.covered_servers(edges)
    groups: dict[Endpoint, list[Edge]] = {}
    for edge in edges:
        server = placed(edge, edge.server)
        if server in covered and selection.live(edge):
            groups.setdefault(server, []).append(edge)
    return groups


def by_client(edges: Iterable[Edge], selection: MapFilter) -> dict[Endpoint, list[Edge]]:
    """Covered clients (placed in their cluster), each with every live edge out of it."""
    edges = list(edges)
    covered = selection.covered_clients(edges)
    groups: dict[Endpoint, list[Edge]] = {}
    for edge in edges:
        client = placed(edge, edge.client)
        if client in covered and selection.live(edge):
            groups.setdefault(client, []).append(edge)
    return groups


def metadata(name: str, namespace: str, cluster: str | None, about: str) -> dict[str, Any]:
    """Object metadata: managed-by label, and what the object was generated for."""
    annotations = {"callmap.io/generated-for": about}
    if cluster is not None:
        annotations["callmap.io/cluster"] = cluster
    return {
        "name": name,
        "namespace": namespace,
        "labels": dict(MANAGED_BY),
        "annotations": annotations,
    }


def cidr(ip: str) -> str | None:
    """``ip`` as a one-address CIDR block; None if it is not an address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    return f"{address}/{address.max_prefixlen}"


class PolicyBuilder(Generic[OptionsT]):
    """One policy export under way: the edges it covers, its options, what it wrote so far."""

    def __init__(
        self,
        edges: Iterable[Edge],
        labels: LabelBook,
        selection: MapFilter | None,
        options: OptionsT,
        ports: PortMap | None,
    ) -> None:
        self.edges = list(edges)
        self.selection = selection or MapFilter()
        self.cluster = policy_cluster(self.edges, self.selection)
        self.labels = labels
        self.portmap = ports or PortMap()
        self.options = options
        self.export = Export()
        self.incomplete = False
        """Set by :meth:`peers` when a peer could not be written."""

    def warn(self, text: str) -> None:
        self.export.warnings.append(text)

    def foreign(self, endpoint: Endpoint) -> bool:
        """Whether a placed ``endpoint`` lives in a cluster other than the policies' own."""
        return endpoint.cluster is not None and endpoint.cluster != self.cluster

    def left_out(self, endpoint: Endpoint, why: str) -> None:
        """A peer in another cluster that this format cannot write: warned and counted."""
        self.export.counts["cross_cluster_left_out"] += 1
        self.warn(f"{qualified(endpoint)} in cluster {endpoint.cluster}: {why}, left out")

    def servers(self) -> dict[Endpoint, list[Edge]]:
        """Covered servers, each with every live edge into it."""
        return by_server(self.edges, self.selection)

    def clients(self) -> dict[Endpoint, list[Edge]]:
        """Covered clients, each with every live edge out of it."""
        return by_client(self.edges, self.selection)

    def peers(
        self,
        edges: list[Edge],
        side: str,
        peer_of: Callable[[Endpoint], dict[str, Any] | None],
    ) -> list[tuple[dict[str, Any], list[ProtocolPort] | None]]:
        """Each peer of ``edges`` as ``peer_of`` writes it, once, with the ports seen.

        The peer is the client for ``side`` "from" and the server for "to"; peers
        come in the order of ``edges``. Ports are ``(protocol, port)``, the TCP ones
        first; they are None when an edge to the peer was seen without any port,
        TCP or UDP (DNS only): then any port is allowed.
        """
        merged: dict[str, tuple[dict[str, Any], set[ProtocolPort], bool]] = {}
        self.incomplete = False
        for edge in edges:
            peer = peer_of(
                placed(edge, edge.client) if side == "from" else in_cluster(edge, edge.server)
            )
            if peer is None:
                self.incomplete = True
                continue
            key = repr(sorted(peer.items()))
            _, ports, any_port = merged.get(key, (peer, set(), False))
            seen = {
                (protocol, port)
                for protocol in PROTOCOLS
                for port in self.portmap.ports(edge, protocol)
            }
            merged[key] = (peer, ports | seen, any_port or not seen)
        return [
            (peer, None if any_port else sorted(ports, key=protocol_port_key))
            for peer, ports, any_port in merged.values()
        ]

    def add(
        self, api_version: str, kind: str, name: str, workload: Endpoint, spec: dict[str, Any]
    ) -> None:
        """Add the object ``name`` for ``workload`` to the export."""
        about = metadata(name, workload.namespace or "", self.cluster, qualified(workload))
        self.export.documents.append(
            {"apiVersion": api_version, "kind": kind, "metadata": about, "spec": spec}
        )
