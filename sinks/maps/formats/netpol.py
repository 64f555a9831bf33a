"""Kubernetes NetworkPolicies from the map (``callmap export --format networkpolicy``).

For every covered server workload, one ``Ingress`` policy selecting its pods
and allowing each observed client on the observed ports: a client in the same
namespace by pod labels, one elsewhere by namespace and pod labels, an
unresolved IP or a node by an ``ipBlock``. TCP and UDP ports are listed with
their protocol, TCP first. An edge seen without any port (DNS only) allows
every port from that client; one seen on UDP ports only allows those.

With ``egress=True``, also one ``Egress`` policy per covered client workload,
allowing its observed servers and DNS (to the cluster's DNS pods, UDP and TCP
53, which every workload needs to resolve anything). Plain NetworkPolicies
cannot name DNS names: an external reached only by name is reported as a
warning (use ``--format cilium`` and its ``toFQDNs`` rules).

A NetworkPolicy cannot select pods of another cluster (global edges): such a
peer is left out, warned about and counted (``cross_cluster_left_out``), and
the policy that would have held it is not written, as for any peer it cannot
express. Nodes and unresolved IPs of another cluster are ``ipBlock``s as
anywhere. ``--format cilium`` names workloads of other clusters. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from callmap.wire import Edge, Endpoint
from sinks.endpoints import qualified, sort_key
from sinks.escape import is_dns1123_label, k8s_name
from sinks.maps.filters import MapFilter
from sinks.maps.formats.labels import LabelBook
from sinks.maps.formats.policy import (
    NAMESPACE_LABEL,
    Export,
    PolicyBuilder,
    PortMap,
    ProtocolPort,
    cidr,
)


@dataclass(frozen=True, slots=True)
class NetpolOptions:
    egress: bool = False
    """Also write per-client egress policies (DNS kept open)."""
    dns_namespace: str = "kube-system"
    """Namespace of the cluster DNS pods."""
    dns_labels: Mapping[str, str] = field(default_factory=lambda: {"k8s-app": "kube-dns"})
    """Labels of the cluster DNS pods."""
    name_prefix: str = "callmap"
    """Policies are named ``<prefix>-<workload>-ingress`` / ``-egress``."""


def _ports(ports: list[ProtocolPort]) -> list[dict[str, Any]]:
    return [{"protocol": protocol, "port": port} for protocol, port in ports]


class _Builder(PolicyBuilder[NetpolOptions]):
    def peer(self, endpoint: Endpoint, home: str) -> dict[str, Any] | None:
        """A NetworkPolicyPeer for ``endpoint`` seen from a policy in namespace ``home``."""
        if self.foreign(endpoint) and endpoint.type in ("workload", "service", "apiserver"):
            self.left_out(
                endpoint, "a NetworkPolicy cannot select pods of another cluster (try cilium)"
            )
            return None
        if endpoint.type == "service":
            self.warn(f"{qualified(endpoint)}: a service with no workloads behind it, left out")
            return None
        if endpoint.type == "workload":
            if not is_dns1123_label(endpoint.namespace or ""):
                self.warn(f"{qualified(endpoint)}: invalid namespace name, left out")
                return None
            selector = self.labels.selector(endpoint)
            if selector is None:
                self.warn(f"{qualified(endpoint)}: no valid pod labels, left out")
                return None
            peer: dict[str, Any] = {"podSelector": {"matchLabels": selector.labels}}
            if endpoint.namespace != home:
                peer["namespaceSelector"] = {"matchLabels": {NAMESPACE_LABEL: endpoint.namespace}}
            return peer
        block = cidr(endpoint.ip or "")
        if block is not None and endpoint.type in ("ip", "node", "external"):
            return {"ipBlock": {"cidr": block}}
        hint = "; --format cilium can name DNS names" if endpoint.type == "external" else ""
        self.warn(f"{qualified(endpoint)}: a NetworkPolicy cannot name it, left out{hint}")
        return None

    def rules(self, edges: list[Edge], home: str, side: str) -> list[dict[str, Any]]:
        """One rule per peer (client for ingress, server for egress), merged ports."""
        rules = []
        for peer, ports in self.peers(edges, side, lambda endpoint: self.peer(endpoint, home)):
            rule: dict[str, Any] = {side: [peer]}
            if ports is not None:
                rule["ports"] = _ports(ports)
            rules.append(rule)
        return rules

    def policy(self, workload: Endpoint, kind: str, rules: list[dict[str, Any]]) -> None:
        if self.incomplete:
            self.warn(
                f"{qualified(workload)}: no {kind} policy, it would deny the observed peers "
                "left out above"
            )
            return
        namespace = workload.namespace or ""
        selector = self.labels.selector(workload)
        if not is_dns1123_label(namespace) or selector is None:
            self.warn(f"{qualified(workload)}: no valid namespace or pod labels, no {kind} policy")
            return
        name = k8s_name(f"{self.options.name_prefix}-{workload.name}-{kind.lower()}")
        spec = {
            "podSelector": {"matchLabels": selector.labels},
            "policyTypes": [kind],
            kind.lower(): rules,
        }
        self.add("networking.k8s.io/v1", "NetworkPolicy", name, workload, spec)

    def dns_rule(self) -> dict[str, Any]:
        peer = {
            "namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: self.options.dns_namespace}},
            "podSelector": {"matchLabels": dict(self.options.dns_labels)},
        }
        return {"to": [peer], "ports": _ports([("UDP", 53), ("TCP", 53)])}


def network_policies(
    edges: Iterable[Edge],
    labels: LabelBook,
    selection: MapFilter | None = None,
    options: NetpolOptions | None = None,
    ports: PortMap | None = None,
) -> Export:
    """Ingress policies per covered server (and egress per covered client if asked)."""
    builder = _Builder(edges, labels, selection, options or NetpolOptions(), ports)
    servers = builder.servers()
    for server in sorted(servers, key=sort_key):
        if server.type == "service":
            builder.warn(f"{qualified(server)}: a service with no workloads behind it, no policy")
        if server.type != "workload":
            continue
        calls = sorted(
            servers[server], key=lambda e: sort_key(e.client, server.namespace, server.cluster)
        )
        rules = builder.rules(calls, server.namespace or "", "from")
        builder.policy(server, "Ingress", rules)
    if builder.options.egress:
        clients = builder.clients()
        for client in sorted(clients, key=sort_key):
            if client.type != "workload":
                continue
            calls = sorted(
                clients[client],
                key=lambda e: sort_key(e.server, client.namespace, client.cluster),
            )
            rules = [*builder.rules(calls, client.namespace or "", "to"), builder.dns_rule()]
            builder.policy(client, "Egress", rules)
    return builder.export
