"""Filters: which edges a map command reads, and which workloads a policy covers."""

from __future__ import annotations

import pytest

from callmap.errors import ConfigError
from sinks.maps.filters import MapFilter, parse_since


def test_since_takes_durations_and_times() -> None:
    now = 1_700_000_000.0
    assert parse_since("90m", now) == now - 5400
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("2023-11-14T22:13:20Z", now) == 1_700_000_000.0
    assert parse_since("2023-11-14T22:13:20", now) == 1_700_000_000.0  # naive means UTC
    with pytest.raises(ConfigError, match="--since"):
        parse_since("yesterday", now)


def test_expired_edges_are_left_out_unless_asked(corpus) -> None:
    expired = [e for e in corpus.edges if e.event == "expired"]
    assert expired and not MapFilter().select(expired)
    assert MapFilter(include_expired=True).select(expired) == expired


def test_since_keeps_recent_edges(corpus) -> None:
    recent = MapFilter(since=1_700_000_100.0).select(corpus.edges)
    assert recent and all(e.last_seen >= 1_700_000_100.0 for e in recent)
    assert len(recent) < len(MapFilter().select(corpus.edges))


def test_namespace_keeps_edges_touching_it(corpus) -> None:
    selected = MapFilter(namespaces=frozenset({"finance"})).select(corpus.edges)
    assert {(e.client.name, e.server.name or e.server.type) for e in selected} == {
        ("checkoutservice", "ledger"),
        ("ledger", "apiserver"),
        ("ledger", "node-a"),
        ("reporter", "legacy-db"),
    }


def test_clients_and_servers_by_any_of_their_names(corpus) -> None:
    by_dns = MapFilter(servers=frozenset({"api.stripe.com"})).select(corpus.edges)
    assert [e.client.name for e in by_dns] == ["checkoutservice"]
    by_service = MapFilter(servers=frozenset({"shop/cartservice"})).select(corpus.edges)
    assert {e.server.name for e in by_service} == {"cartservice", "cartservice-canary"}
    by_ip = MapFilter(clients=frozenset({"shop/frontend"}), servers=frozenset({"10.9.8.7"}))
    assert len(by_ip.select(corpus.edges)) == 1


def test_policies_cover_workloads_in_the_namespace_with_a_matching_edge(corpus) -> None:
    selection = MapFilter(namespaces=frozenset({"finance"}))
    assert {s.name for s in selection.covered_servers(corpus.edges)} == {"ledger", "legacy-db"}
    assert {c.name for c in selection.covered_clients(corpus.edges)} == {"ledger", "reporter"}
