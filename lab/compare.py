"""Observed edges against the lab's ground truth. Pure.

An edge is right when it is in the truth; the run is a perfect match when
every true edge was observed and every observed edge is true or tolerated
(``edges ⊆ observed ⊆ edges ∪ tolerated``). Edges are compared as the strings
``lab truth`` prints: ``ns/workload``, ``external:<dns name>``, ``ip:<address>``,
``node:<name>``, ``apiserver`` and ``service:ns/name`` (a service nobody stood
behind when its name was looked up).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from callmap.wire import Edge, Endpoint
from lab.truth import ExpectedEdge, Truth


def endpoint_text(endpoint: Endpoint) -> str:
    """An endpoint as the truth names it."""
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


@dataclass(frozen=True, slots=True)
class Comparison:
    expected: frozenset[ExpectedEdge]
    tolerated: frozenset[ExpectedEdge]
    observed: frozenset[ExpectedEdge]

    @property
    def missing(self) -> frozenset[ExpectedEdge]:
        return self.expected - self.observed

    @property
    def unexpected(self) -> frozenset[ExpectedEdge]:
        return self.observed - self.expected - self.tolerated

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
        return not self.missing and not self.unexpected

    def as_json(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "missing": [e.as_json() for e in sorted(self.missing)],
            "unexpected": [e.as_json() for e in sorted(self.unexpected)],
            "expected": [e.as_json() for e in sorted(self.expected)],
            "observed": [e.as_json() for e in sorted(self.observed)],
        }

    def as_text(self) -> str:
        lines = [
            f"precision {self.precision:.3f}  recall {self.recall:.3f}  "
            f"({len(self.observed)} observed, {len(self.expected)} expected)"
        ]
        lines += [f"  missing:    {e}" for e in sorted(self.missing)]
        lines += [f"  unexpected: {e}" for e in sorted(self.unexpected)]
        lines.append("perfect match" if self.perfect else "NOT a perfect match")
        return "\n".join(lines)


def compare(truth: Truth, edges: Iterable[Edge]) -> Comparison:
    return Comparison(truth.edges, truth.tolerated, observed_edges(edges))
