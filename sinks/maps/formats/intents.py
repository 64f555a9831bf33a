"""Otterize ClientIntents from the map (``callmap export --format intents``).

One ``k8s.otterize.com/v2beta1`` ClientIntents per covered client workload,
naming every server it was seen calling:

- an in-cluster workload as ``kubernetes: {name, kind}``, its name qualified as
  ``name.namespace`` when it lives in another namespace;
- a service with no workloads behind it as ``service: {name}``, and the API
  server as ``service: {name: kubernetes.default}``;
- externals in one ``internet`` target: ``domains`` for DNS names, ``ips`` for
  addresses (unresolved IPs included: Otterize cannot tell them apart either).

Nodes cannot be named in intents and are reported as warnings, as are DNS
names that are not valid ones (hostile input).

ClientIntents have no target for a workload of another cluster (global
edges): ``kubernetes`` and ``service`` names resolve in the client's own
cluster. A server in another cluster reached through a service is named the
way its client reaches it, by the service's clusterset name
(``<svc>.<ns>.svc.clusterset.local``, the MCS API's name for an exported
service), among the ``internet`` target's ``domains``; one reached by pod
address, and the API server of another cluster, cannot be named: warned
about and counted. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from callmap.wire import Edge, Endpoint
from sinks.endpoints import (
    APISERVER_NAME,
    APISERVER_NAMESPACE,
    identity,
    in_cluster,
    qualified,
    sort_key,
)
from sinks.escape import is_dns1123_label, is_dns1123_subdomain, is_dns_name, k8s_name
from sinks.maps.filters import MapFilter
from sinks.maps.formats.policy import Export, by_client, cidr, metadata, policy_cluster

API_VERSION = "k8s.otterize.com/v2beta1"
CLUSTERSET_DOMAIN = "clusterset.local"
"""The MCS API's domain of names that reach a service exported by the clusterset."""


def _qualified_name(server: Endpoint, home: str | None) -> str:
    name = server.name or ""
    return name if server.namespace == home else f"{name}.{server.namespace}"


def _clusterset_name(server: Endpoint, domain: str) -> str | None:
    """The clusterset name of the service behind ``server``, if it was reached through one."""
    service = server.service if server.type == "workload" else server.name
    if server.type not in ("workload", "service") or not service:
        return None
    return f"{service}.{server.namespace}.svc.{domain}"


def _remote(
    client: Endpoint, server: Endpoint, domain: str, export: Export
) -> tuple[str | None, str | None]:
    """(domain, ip) naming ``server`` of another cluster, or neither (warned, counted)."""
    name = _clusterset_name(server, domain)
    if name is not None and is_dns_name(name):
        export.counts["cross_cluster_peers"] += 1
        return name, None
    if server.type == "ip" and cidr(server.ip or ""):
        export.counts["cross_cluster_peers"] += 1
        return None, server.ip
    export.counts["cross_cluster_left_out"] += 1
    export.warnings.append(
        f"{qualified(client)} -> {qualified(server)} in cluster {server.cluster}: "
        "ClientIntents name another cluster's servers by clusterset service name only, left out"
    )
    return None, None


def _targets(
    client: Endpoint, edges: list[Edge], export: Export, domain: str
) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []
    seen: set[str] = set()
    domains: set[str] = set()
    ips: set[str] = set()
    for edge in sorted(edges, key=lambda e: sort_key(e.server, client.namespace, client.cluster)):
        located = in_cluster(edge, edge.server)
        if located.cluster is not None and located.cluster != client.cluster:
            name, ip = _remote(client, located, domain, export)
            domains |= {name} if name else set()
            ips |= {ip} if ip else set()
            continue
        server = identity(located)
        target: dict[str, Any] | None = None
        match server.type:
            case "workload" | "service" if not (
                is_dns1123_subdomain(server.name or "") and is_dns1123_label(server.namespace or "")
            ):
                export.warnings.append(
                    f"{qualified(server)}: not a valid Kubernetes name, left out"
                )
            case "workload":
                name = _qualified_name(server, client.namespace)
                target = {"kubernetes": {"name": name, "kind": server.kind or "Deployment"}}
            case "service":
                target = {"service": {"name": _qualified_name(server, client.namespace)}}
            case "apiserver":
                name = f"{APISERVER_NAME}.{APISERVER_NAMESPACE}"
                target = {"service": {"name": name}}
            case "external" if server.dns_name:
                if is_dns_name(server.dns_name):
                    domains.add(server.dns_name.rstrip("."))
                else:
                    export.warnings.append(f"{qualified(server)}: not a valid DNS name, left out")
            case "external" | "ip" if cidr(server.ip or ""):
                ips.add(server.ip or "")
            case _:
                export.warnings.append(
                    f"{qualified(client)} -> {qualified(server)}: ClientIntents cannot name it"
                )
        key = repr(target)
        if target is not None and key not in seen:
            seen.add(key)
            targets.append(target)
    if domains or ips:
        internet: dict[str, Any] = {}
        if domains:
            internet["domains"] = sorted(domains)
        if ips:
            internet["ips"] = sorted(ips)
        targets.append({"internet": internet})
    return targets


def client_intents(
    edges: Iterable[Edge],
    selection: MapFilter | None = None,
    clusterset_domain: str = CLUSTERSET_DOMAIN,
) -> Export:
    """ClientIntents for every covered client workload, with all its live calls."""
    edges = list(edges)
    selection = selection or MapFilter()
    cluster = policy_cluster(edges, selection)
    export = Export()
    clients = by_client(edges, selection)
    for client in sorted(clients, key=sort_key):
        if client.type != "workload":
            export.warnings.append(f"{qualified(client)}: not a workload, no ClientIntents")
            continue
        if not (
            is_dns1123_label(client.namespace or "") and is_dns1123_subdomain(client.name or "")
        ):
            export.warnings.append(f"{qualified(client)}: not a valid Kubernetes name, no intents")
            continue
        targets = _targets(client, clients[client], export, clusterset_domain)
        if not targets:
            export.warnings.append(f"{qualified(client)}: no target could be named")
            continue
        workload = {"name": client.name, "kind": client.kind or "Deployment"}
        name = k8s_name(client.name or "")
        export.documents.append(
            {
                "apiVersion": API_VERSION,
                "kind": "ClientIntents",
                "metadata": metadata(name, client.namespace or "", cluster, qualified(client)),
                "spec": {"workload": workload, "targets": targets},
            }
        )
    return export
