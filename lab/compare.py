"""Observed edges against the lab's ground truth. Pure.

An edge is right when it is in the truth; the run is a perfect match when
every true edge was observed and every observed edge is true or tolerated
(``edges ⊆ observed ⊆ edges ∪ tolerated``). Edges are compared as the strings
``lab truth`` prints: ``ns/workload``, ``external:<dns name>``, ``ip:<address>``,
``node:<name>``, ``apiserver`` and ``service:ns/name`` (a service nobody stood
behind when its name was looked up).

Ports are compared too when the truth knows them (every lab's truth does but
the multi-cluster plan's), each with its transport: an edge's ``ports`` are
TCP ports, its ``udp_ports`` UDP ones, and ``53/udp`` is not ``53/tcp``. An
observed edge may show no port the truth does not allow (``unexpected_ports``,
which spoils a match: a UDP port shown as TCP is one), and the ports a true
edge was called on that it does not show are reported (``missing_ports``); a
missing UDP port spoils a match, a missing TCP port does not (see
:attr:`Comparison.perfect`). A ``scope`` leaves out observed edges that are
none of the lab's business (a real cluster's own traffic); they are reported
as ``ignored``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from callmap.wire import Edge, Endpoint
from lab.clustertruth import ClusterTruth
from lab.truth import ExpectedEdge, PortMap, ServerPort, Truth, port_lists, prefixed


def endpoint_text(endpoint: Endpoint) -> str:
    """An endpoint as the truth names it; a global edge's with its cluster
    (:func:`lab.multitruth.prefixed`)."""
    text = _local_text(endpoint)
    return prefixed(text, endpoint.cluster) if endpoint.cluster else text


def _local_text(endpoint: Endpoint) -> str:
    match endpoint.type:
        case "workload":
            return f"{endpoint.namespace}/{endpoint.name}"
        case "external":
            return f"external:{endpoint.dns_name}" if endpoint.dns_name else f"ip:{endpoint.ip}"
        case "node":
            return f"node:{endpoint.name}"
        case "apiserver":
            return "apiserver"
        case "service":
            return f"service:{endpoint.namespace}/{endpoint.name}"
        case _:
            return f"ip:{endpoint.ip}"


def observed_edges(edges: Iterable[Edge]) -> frozenset[ExpectedEdge]:
    """The distinct client/server pairs of live edges."""
    return frozenset(
        ExpectedEdge(endpoint_text(e.client), endpoint_text(e.server))
        for e in edges
        if e.event != "expired"
    )


def observed_ports(edges: Iterable[Edge]) -> dict[ExpectedEdge, frozenset[ServerPort]]:
    """The server ports each live client/server pair was seen on: TCP and UDP."""
    ports: dict[ExpectedEdge, set[ServerPort]] = {}
    for e in edges:
        if e.event != "expired":
            key = ExpectedEdge(endpoint_text(e.client), endpoint_text(e.server))
            found = ports.setdefault(key, set())
            found.update(ServerPort(port, "tcp") for port in e.ports)
            found.update(ServerPort(port, "udp") for port in e.udp_ports)
    return {key: frozenset(found) for key, found in ports.items()}


PortedEdge = tuple[ExpectedEdge, ServerPort]


@dataclass(frozen=True, slots=True)
class Comparison:
    expected: frozenset[ExpectedEdge]
    tolerated: frozenset[ExpectedEdge]
    observed: frozenset[ExpectedEdge]
    expected_ports: PortMap | None = None
    """Ports each true edge must show; None: ports are not compared."""
    allowed_ports: PortMap = field(default_factory=dict)
    """Ports an edge may show (the expected ones and the tolerated ones)."""
    seen_ports: PortMap = field(default_factory=dict)
    ignored: frozenset[ExpectedEdge] = frozenset()
    """Observed edges out of the comparison's scope."""

    @property
    def missing(self) -> frozenset[ExpectedEdge]:
        return self.expected - self.observed

    @property
    def unexpected(self) -> frozenset[ExpectedEdge]:
        return self.observed - self.expected - self.tolerated

    @property
    def missing_ports(self) -> frozenset[PortedEdge]:
        """Ports a true edge was called on that its observed edge does not show."""
        if self.expected_ports is None:
            return frozenset()
        return frozenset(
            (edge, port)
            for edge, ports in self.expected_ports.items()
            if edge in self.observed
            for port in ports - self.seen_ports.get(edge, frozenset())
        )

    @property
    def unexpected_ports(self) -> frozenset[PortedEdge]:
        """Ports an observed true (or tolerated) edge shows that nobody called it on."""
        if self.expected_ports is None:
            return frozenset()
        return frozenset(
            (edge, port)
            for edge in self.observed & (self.expected | self.tolerated)
            for port in self.seen_ports.get(edge, frozenset())
            - self.allowed_ports.get(edge, frozenset())
        )

    @property
    def complete(self) -> bool:
        """Every true edge observed, with every UDP port it was called on."""
        return not self.missing and not self._missing_udp

    @property
    def _missing_udp(self) -> frozenset[PortedEdge]:
        return frozenset(m for m in self.missing_ports if m[1].protocol == "udp")

    @property
    def precision(self) -> float:
        """Share of observed edges that are true (tolerated ones count as true)."""
        if not self.observed:
            return 1.0
        return 1 - len(self.unexpected) / len(self.observed)

    @property
    def recall(self) -> float:
        """Share of true edges that were observed."""
        if not self.expected:
            return 1.0
        return 1 - len(self.missing) / len(self.expected)

    @property
    def perfect(self) -> bool:
        """Every edge right, no edge on a port nobody called it on, no UDP port missing.

        A missing TCP port is reported, not held against the run: callmap
        learns TCP ports from socket scans, which see a connection only while
        it is open at a scan, and from connection tracking, which a lab may
        run without. Every UDP flow is reported when connection tracking first
        sees it, so a missing UDP port is a fault.
        """
        edges = self.complete and not self.unexpected
        return edges and not self.unexpected_ports

    def as_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "precision": self.precision,
            "recall": self.recall,
            "missing": [e.as_json() for e in sorted(self.missing)],
            "unexpected": [e.as_json() for e in sorted(self.unexpected)],
            "expected": [e.as_json() for e in sorted(self.expected)],
            "observed": [e.as_json() for e in sorted(self.observed)],
        }
        if self.expected_ports is not None:
            document["ports"] = {
                "missing": [_ported(e, p) for e, p in sorted(self.missing_ports)],
                "unexpected": [_ported(e, p) for e, p in sorted(self.unexpected_ports)],
                "expected": _port_lists(self.expected_ports),
                "observed": _port_lists(
                    {e: self.seen_ports.get(e, frozenset()) for e in self.observed}
                ),
            }
        if self.ignored:
            document["ignored"] = [e.as_json() for e in sorted(self.ignored)]
        return document

    def as_text(self) -> str:
        lines = [
            f"precision {self.precision:.3f}  recall {self.recall:.3f}  "
            f"({len(self.observed)} observed, {len(self.expected)} expected)"
        ]
        lines += [f"  missing:    {e}" for e in sorted(self.missing)]
        lines += [f"  unexpected: {e}" for e in sorted(self.unexpected)]
        lines += [f"  missing port:    {e} port {p}" for e, p in sorted(self.missing_ports)]
        lines += [f"  unexpected port: {e} port {p}" for e, p in sorted(self.unexpected_ports)]
        if self.ignored:
            lines.append(f"  ({len(self.ignored)} observed edges out of the lab's scope ignored)")
        lines.append("perfect match" if self.perfect else "NOT a perfect match")
        return "\n".join(lines)


def compare(
    truth: Truth,
    edges: Iterable[Edge],
    expected_ports: PortMap | None = None,
    allowed_ports: PortMap | None = None,
    scope: Callable[[ExpectedEdge], bool] | None = None,
) -> Comparison:
    """``edges`` against ``truth``; ports too when ``expected_ports`` is given, or
    the truth's own when it knows them."""
    if expected_ports is None and truth.ports is not None:
        expected_ports, allowed_ports = truth.ports, truth.allowed_ports
    edges = list(edges)
    observed = observed_edges(edges)
    ignored = frozenset(e for e in observed if scope is not None and not scope(e))
    return Comparison(
        truth.edges,
        truth.tolerated,
        observed - ignored,
        expected_ports,
        allowed_ports if allowed_ports is not None else (expected_ports or {}),
        observed_ports(edges) if expected_ports is not None else {},
        ignored,
    )


def compare_with_truth(
    truth: ClusterTruth, edges: Iterable[Edge], scope: Callable[[ExpectedEdge], bool] | None = None
) -> Comparison:
    """``edges`` against the cluster truth, as ``lab run`` compares: pairs, then their ports."""
    required = frozenset(ExpectedEdge(e.client, e.server) for e in truth.edges)
    tolerated = frozenset(ExpectedEdge(e.client, e.server) for e in truth.tolerated) - required
    expected_ports: dict[ExpectedEdge, frozenset[ServerPort]] = {}
    allowed_ports: dict[ExpectedEdge, frozenset[ServerPort]] = {}
    for edge in (*truth.edges, *truth.tolerated):
        pair, port = ExpectedEdge(edge.client, edge.server), ServerPort(edge.port, edge.protocol)
        allowed_ports[pair] = allowed_ports.get(pair, frozenset()) | {port}
        if edge in truth.edges:
            expected_ports[pair] = expected_ports.get(pair, frozenset()) | {port}
    return compare(Truth(required, tolerated), edges, expected_ports, allowed_ports, scope)


def _ported(edge: ExpectedEdge, port: ServerPort) -> dict[str, str | int]:
    return {**edge.as_json(), "port": port.port, "protocol": port.protocol}


def _port_lists(ports: PortMap) -> list[dict[str, Any]]:
    return [{**e.as_json(), **port_lists(ports[e])} for e in sorted(ports)]
