"""The map's questions as ``callmap mcp`` asks them: who calls, what is called, what is
new, the path between two workloads, one workload's policy."""

from __future__ import annotations

import yaml
from helpers.mapedges import edge, workload

from callmap.wire import Endpoint
from sinks.maps.questions import callees, callers, new_since, path, policy

WEB, API, DB, CACHE = workload("web"), workload("api"), workload("db", "data"), workload("cache")
STRIPE = Endpoint(type="external", dns_name="api.stripe.com")
MAP = [
    edge(WEB, workload("api", service="api-svc"), first=100.0),
    edge(API, workload("db", "data", service="postgres"), first=200.0),
    edge(API, STRIPE, first=300.0),
    edge(WEB, CACHE, first=400.0, event="expired"),
    edge(CACHE, DB, first=500.0),
]


def test_who_calls_a_workload_by_name_namespace_or_service() -> None:
    both = ["shop/Deployment/api", "shop/Deployment/cache"]
    for name in ("db", "data/db"):
        assert [c["client"] for c in callers(MAP, name)] == both
    for name in ("postgres", "data/postgres"):  # only api reached it through the service
        assert [c["client"] for c in callers(MAP, name)] == both[:1]


def test_expired_edges_are_not_calls() -> None:
    assert callers(MAP, "cache") == []
    assert [c["server"] for c in callees(MAP, "web")] == ["shop/Deployment/api"]


def test_what_a_workload_calls_with_ports_sources_and_times() -> None:
    calls = callees(MAP, "shop/api")
    assert [c["server"] for c in calls] == ["data/Deployment/db", "external:api.stripe.com"]
    assert calls[0]["ports"] == [8080] and calls[0]["sources"] == ["dns"]
    assert calls[0]["first_seen"] == "1970-01-01T00:03:20Z"


def test_new_calls_are_those_first_seen_since_oldest_first() -> None:
    assert [(c["client"], c["server"]) for c in new_since(MAP, 200.0)] == [
        ("shop/Deployment/api", "data/Deployment/db"),
        ("shop/Deployment/api", "external:api.stripe.com"),
        ("shop/Deployment/cache", "data/Deployment/db"),
    ]


def test_the_path_is_the_shortest_chain_of_live_calls() -> None:
    hops = path(MAP, "web", "postgres")
    assert hops is not None
    assert [(h["client"], h["server"]) for h in hops] == [
        ("shop/Deployment/web", "shop/Deployment/api"),
        ("shop/Deployment/api", "data/Deployment/db"),
    ]
    assert [h["server"] for h in path(MAP, "web", "api.stripe.com") or []][-1] == (
        "external:api.stripe.com"
    )


def test_no_path_against_the_direction_of_calls_or_through_expired_edges() -> None:
    assert path(MAP, "db", "web") is None
    assert path(MAP, "web", "cache") is None  # the only call to it has expired
    assert path(MAP, "nobody", "db") is None


def test_a_servers_policy_admits_its_callers_and_a_clients_intents_name_its_calls() -> None:
    text, warnings = policy(MAP, "data/db", "networkpolicy")
    (document,) = yaml.safe_load_all(text)
    assert document["kind"] == "NetworkPolicy"
    assert document["metadata"]["namespace"] == "data"
    assert "shop" in text and warnings == []
    intents, _ = policy(MAP, "api", "intents")
    (document,) = yaml.safe_load_all(intents)
    assert document["kind"] == "ClientIntents" and "api.stripe.com" in intents
