"""The ECS document of an edge event: what each lifecycle step and each kind of
endpoint becomes (its validity against ECS itself: tests/integration/sinks/service/
test_sink_ecs_flow.py)."""

from __future__ import annotations

import pytest

from callmap.wire import Edge, Endpoint
from sinks.changes import event_key
from sinks.service.formats.ecs import ecs_document, ecs_json

CART = Endpoint(type="workload", namespace="shop", name="cart", kind="Deployment")
LEDGER = Endpoint(type="workload", namespace="billing", name="ledger", kind="StatefulSet")
API = Endpoint(type="external", dns_name="api.example.org", ip="203.0.113.9")
BARE = Endpoint(type="ip", ip="10.0.0.7")


def edge(client: Endpoint = CART, server: Endpoint = LEDGER, event: str = "new") -> Edge:
    return Edge(
        edge_id="e1",
        event=event,  # type: ignore[arg-type]
        cluster="prod",
        client=client,
        server=server,
        ports=(8443, 9000),
        sources=("dns", "socket-client"),
        first_seen=1_700_000_000.0,
        last_seen=1_700_000_060.5,
        count=7,
    )


@pytest.mark.parametrize(
    ("event", "step"), [("new", "start"), ("refresh", "info"), ("expired", "end")]
)
def test_each_lifecycle_step_is_a_network_connection_event(event: str, step: str) -> None:
    document = ecs_document(edge(event=event))
    assert document["event"]["kind"] == "event"
    assert document["event"]["category"] == ["network"]
    assert document["event"]["type"] == ["connection", step]
    assert document["event"]["action"] == f"edge-{event}"


def test_times_key_and_counts_of_the_edge_are_kept() -> None:
    an_edge = edge()
    document = ecs_document(an_edge)
    assert document["@timestamp"] == document["event"]["end"] == "2023-11-14T22:14:20.500Z"
    assert document["event"]["start"] == "2023-11-14T22:13:20.000Z"
    assert document["event"]["id"] == event_key(an_edge)
    assert document["destination"]["port"] == 8443
    assert document["callmap"]["ports"] == [8443, 9000]
    assert document["callmap"]["count"] == 7
    assert document["orchestrator"] == {"type": "kubernetes", "cluster": {"name": "prod"}}


def test_client_is_source_and_server_is_destination() -> None:
    document = ecs_document(edge(CART, API))
    assert document["source"] == {"address": "shop/Deployment/cart"}
    assert document["destination"] == {
        "address": "api.example.org",
        "domain": "api.example.org",
        "ip": "203.0.113.9",
        "port": 8443,
    }
    assert document["related"] == {
        "hosts": ["api.example.org", "shop/Deployment/cart"],
        "ip": ["203.0.113.9"],
    }


@pytest.mark.parametrize(
    ("client", "server", "direction"),
    [
        (CART, LEDGER, "internal"),
        (CART, API, "outbound"),
        (API, CART, "inbound"),
        (CART, BARE, "unknown"),
        (
            Endpoint(type="node", name="node-a", ip="10.0.0.2"),
            Endpoint(type="apiserver"),
            "internal",
        ),
    ],
)
def test_direction_takes_the_cluster_as_the_perimeter(
    client: Endpoint, server: Endpoint, direction: str
) -> None:
    assert ecs_document(edge(client, server))["network"]["direction"] == direction


def test_a_replay_is_the_same_line_byte_for_byte() -> None:
    assert ecs_json(edge()) == ecs_json(edge())
    assert b"\n" not in ecs_json(edge())
