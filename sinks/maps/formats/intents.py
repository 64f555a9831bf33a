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
names that are not valid ones (hostile input). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from callmap.wire import Edge, Endpoint
from sinks.endpoints import APISERVER_NAME, APISERVER_NAMESPACE, identity, qualified, sort_key
from sinks.escape import is_dns1123_label, is_dns1123_subdomain, is_dns_name, k8s_name
from sinks.maps.filters import MapFilter
from sinks.maps.formats.policy import Export, by_client, cidr, metadata, single_cluster

API_VERSION = "k8s.otterize.com/v2beta1"


def _qualified_name(server: Endpoint, home: str | None) -> str:
    name = server.name or ""
    return name if server.namespace == home else f"{name}.{server.namespace}"


def _targets(client: Endpoint, edges: list[Edge], export: Export) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []
    seen: set[str] = set()
    domains: set[str] = set()
    ips: set[str] = set()
    for edge in sorted(edges, key=lambda e: sort_key(e.server, client.namespace)):
        server = identity(edge.server)
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


def client_intents(edges: Iterable[Edge], selection: MapFilter | None = None) -> Export:
    """ClientIntents for every covered client workload, with all its live calls."""
    edges = list(edges)
    selection = selection or MapFilter()
    cluster = single_cluster(edges)
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
        targets = _targets(client, clients[client], export)
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
