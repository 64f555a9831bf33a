"""CiliumNetworkPolicies from the map (``callmap export --format cilium``).

One policy per covered workload: ``ingress`` from its observed clients when it
is a covered server, ``egress`` to its observed servers when it is a covered
client. Unlike plain NetworkPolicies, Cilium can name what callmap sees:
externals by DNS name (``toFQDNs``, with the DNS proxy rule that makes them
work), the API server (``toEntities: kube-apiserver``), nodes (``host``,
``remote-node``) and services without workloads (``toServices``). Observed
ports go in ``toPorts`` with their protocol (``TCP``, then ``UDP``); a peer seen
without any port gets no ``toPorts``, so every port. A DNS name
that is not a valid one (hostile input) is left out with a warning.

A workload of another cluster (global edges, Cilium Cluster Mesh) is selected
with the cluster label, ``io.cilium.k8s.policy.cluster: <name>``, next to its
pod labels and namespace: Cilium selects endpoints of the local cluster only
unless a cluster is named. The API server, nodes without an address and
services without workloads of another cluster have no such form: left out,
warned about and counted. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from callmap.wire import Edge, Endpoint
from sinks.endpoints import qualified, sort_key
from sinks.escape import is_dns1123_label, is_dns_name, is_label_value, k8s_name
from sinks.maps.filters import MapFilter
from sinks.maps.formats.labels import LabelBook
from sinks.maps.formats.policy import Export, PolicyBuilder, PortMap, cidr

NAMESPACE_KEY = "k8s:io.kubernetes.pod.namespace"
CLUSTER_KEY = "io.cilium.k8s.policy.cluster"


@dataclass(frozen=True, slots=True)
class CiliumOptions:
    dns_namespace: str = "kube-system"
    """Namespace of the cluster DNS pods."""
    dns_labels: Mapping[str, str] = field(default_factory=lambda: {"k8s-app": "kube-dns"})
    """Labels of the cluster DNS pods."""
    name_prefix: str = "callmap"
    """Policies are named ``<prefix>-<workload>``."""


class _Builder(PolicyBuilder[CiliumOptions]):
    def selector(self, endpoint: Endpoint) -> dict[str, Any] | None:
        if not is_dns1123_label(endpoint.namespace or ""):
            self.warn(f"{qualified(endpoint)}: invalid namespace name, left out")
            return None
        selector = self.labels.selector(endpoint)
        if selector is None:
            self.warn(f"{qualified(endpoint)}: no valid pod labels, left out")
            return None
        return {"matchLabels": {**selector.labels, NAMESPACE_KEY: endpoint.namespace}}

    def remote_selector(self, endpoint: Endpoint) -> dict[str, Any] | None:
        """A workload of another cluster: its selector with the cluster label."""
        cluster = endpoint.cluster or ""
        if not (cluster and is_label_value(cluster)):
            self.left_out(endpoint, "the cluster name is not a valid label value")
            return None
        selector = self.selector(endpoint)
        if selector is None:
            return None
        self.export.counts["cross_cluster_peers"] += 1
        return {"matchLabels": {**selector["matchLabels"], CLUSTER_KEY: cluster}}

    def peer(self, endpoint: Endpoint, side: str) -> dict[str, Any] | None:
        """The selecting part of a rule (``fromEndpoints``, ``toFQDNs``, ...)."""
        if self.foreign(endpoint):
            return self.remote_peer(endpoint, side)
        match endpoint.type:
            case "workload":
                selector = self.selector(endpoint)
                return {f"{side}Endpoints": [selector]} if selector else None
            case "service" if side == "to":
                service = {"serviceName": endpoint.name, "namespace": endpoint.namespace}
                return {"toServices": [{"k8sService": service}]}
            case "apiserver":
                return {f"{side}Entities": ["kube-apiserver"]}
            case "node":
                return {f"{side}Entities": ["host", "remote-node"]}
            case "external" if side == "to" and endpoint.dns_name:
                if is_dns_name(endpoint.dns_name):
                    return {"toFQDNs": [{"matchName": endpoint.dns_name.rstrip(".")}]}
                self.warn(f"{qualified(endpoint)}: not a valid DNS name, left out")
                return None
        block = cidr(endpoint.ip or "")
        if block is not None:
            return {f"{side}CIDR": [block]}
        self.warn(f"{qualified(endpoint)}: cannot be written as a Cilium peer, left out")
        return None

    def remote_peer(self, endpoint: Endpoint, side: str) -> dict[str, Any] | None:
        """A peer in another cluster: a workload by labels and cluster, anything else by
        its address, if it has one."""
        if endpoint.type == "workload":
            selector = self.remote_selector(endpoint)
            return {f"{side}Endpoints": [selector]} if selector else None
        block = cidr(endpoint.ip or "")
        if block is not None:
            self.export.counts["cross_cluster_peers"] += 1
            return {f"{side}CIDR": [block]}
        self.left_out(endpoint, "Cilium names it in its own cluster only")
        return None

    def rules(self, edges: list[Edge], side: str) -> list[dict[str, Any]]:
        rules = []
        for peer, ports in self.peers(edges, side, lambda endpoint: self.peer(endpoint, side)):
            rule = dict(peer)
            if ports is not None:
                listed = [{"port": str(port), "protocol": proto} for proto, port in ports]
                rule["toPorts"] = [{"ports": listed}]
            rules.append(rule)
        return rules

    def complete(self, workload: Endpoint, direction: str) -> bool:
        """False (with a warning) when the last rules left a peer out."""
        if self.incomplete:
            self.warn(
                f"{qualified(workload)}: no {direction} rules, they would deny the observed "
                "peers left out above"
            )
        return not self.incomplete

    def dns_rule(self) -> dict[str, Any]:
        selector = {**self.options.dns_labels, NAMESPACE_KEY: self.options.dns_namespace}
        return {
            "toEndpoints": [{"matchLabels": selector}],
            "toPorts": [
                {
                    "ports": [{"port": "53", "protocol": "ANY"}],
                    "rules": {"dns": [{"matchPattern": "*"}]},
                }
            ],
        }


def cilium_policies(
    edges: Iterable[Edge],
    labels: LabelBook,
    selection: MapFilter | None = None,
    options: CiliumOptions | None = None,
    ports: PortMap | None = None,
) -> Export:
    """One CiliumNetworkPolicy per covered workload, ingress and egress as observed."""
    builder = _Builder(edges, labels, selection, options or CiliumOptions(), ports)
    servers = {k: v for k, v in builder.servers().items() if k.type == "workload"}
    clients = {k: v for k, v in builder.clients().items() if k.type == "workload"}
    for workload in sorted(servers.keys() | clients.keys(), key=sort_key):
        selector = builder.selector(workload)
        if selector is None:
            continue
        own = {k: v for k, v in selector["matchLabels"].items() if k != NAMESPACE_KEY}
        spec: dict[str, Any] = {"endpointSelector": {"matchLabels": own}}
        if workload in servers:
            calls = sorted(
                servers[workload],
                key=lambda e: sort_key(e.client, workload.namespace, workload.cluster),
            )
            rules = builder.rules(calls, "from")
            if builder.complete(workload, "ingress"):
                spec["ingress"] = rules
        if workload in clients:
            calls = sorted(
                clients[workload],
                key=lambda e: sort_key(e.server, workload.namespace, workload.cluster),
            )
            rules = [*builder.rules(calls, "to"), builder.dns_rule()]
            if builder.complete(workload, "egress"):
                spec["egress"] = rules
        if len(spec) == 1:
            continue
        name = k8s_name(f"{builder.options.name_prefix}-{workload.name}")
        builder.add("cilium.io/v2", "CiliumNetworkPolicy", name, workload, spec)
    return builder.export
