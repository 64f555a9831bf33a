"""Edge events as Elastic Common Schema documents (``sink jsonl --format ecs``,
``sink syslog --format ecs``). Pure.

Filebeat, Elastic Agent and Fluent Bit ship these lines into Elasticsearch
or OpenSearch without a mapping of their own:

- ``event``: kind ``event``, category ``network``, type ``connection`` plus
  ``start`` (``new``), ``info`` (``refresh``) or ``end`` (``expired``);
  ``event.action`` is ``edge-new`` and so on, ``event.id`` the event key (a
  replay has the same), ``event.start``/``event.end`` the first and last
  sighting, ``@timestamp`` the last.
- ``source`` is the client and ``destination`` the server: ``address`` an
  external's name or a bare address as it is, else the endpoint's one-line
  identity (``shop/Deployment/cart``); ``domain`` an external's DNS name,
  ``ip`` where the endpoint has one, ``destination.port`` the first port.
- ``network.direction`` takes the cluster as the perimeter: ``internal``
  between the cluster's own endpoints, ``outbound`` to an external name,
  ``inbound`` from one, ``unknown`` where a side is a bare address.
- ``orchestrator`` names the cluster; ``related`` collects both sides' names
  and addresses for pivoting.
- Everything ECS has no field for (every port, the sources, the Kubernetes
  identity of each side, counts) is under ``callmap``, the custom namespace
  ECS asks custom fields to use. ``callmap.health`` is the event's health as
  flat numbers: the wire's counts, and the round-trip times as
  ``rtt_p50_ms``, ``rtt_p99_ms``, ``rtt_mean_ms`` and ``rtt_samples`` beside
  ``retransmits`` (:func:`sinks.health.health_summary`). ECS has no field
  for a round-trip time: ``event.duration`` is how long the event lasted,
  not the network's latency, and stays unset.

``network.community_id`` is left out on purpose: it hashes one flow's five
tuple, and an edge folds many connections whose client ports it does not
keep. Strings stay verbatim: JSON escapes them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from callmap import __version__
from callmap.wire import Edge, Endpoint
from sinks.changes import event_key
from sinks.endpoints import label, qualified
from sinks.health import health_summary
from sinks.service.formats.transport import transport
from sinks.times import iso_time

ECS_VERSION = "8.11.0"
"""The ECS release these documents follow; tests check them against its field definitions."""
_TYPES = {"new": "start", "refresh": "info", "expired": "end"}
_IN_CLUSTER = frozenset({"workload", "service", "node", "apiserver"})


def _side(endpoint: Endpoint, port: int | None) -> dict[str, Any]:
    raw = endpoint.type in ("external", "ip")
    side: dict[str, Any] = {"address": label(endpoint) if raw else qualified(endpoint)}
    if endpoint.type == "external" and endpoint.dns_name:
        side["domain"] = endpoint.dns_name
    if endpoint.ip:
        side["ip"] = endpoint.ip
    if port is not None:
        side["port"] = port
    return side


def _direction(client: Endpoint, server: Endpoint) -> str:
    if client.type in _IN_CLUSTER and server.type in _IN_CLUSTER:
        return "internal"
    if client.type in _IN_CLUSTER and server.type == "external":
        return "outbound"
    if client.type == "external" and server.type in _IN_CLUSTER:
        return "inbound"
    return "unknown"


def _related(edge: Edge) -> dict[str, list[str]]:
    related: dict[str, list[str]] = {}
    hosts = [e.dns_name for e in (edge.client, edge.server) if e.dns_name]
    hosts += [qualified(e) for e in (edge.client, edge.server) if e.type in _IN_CLUSTER]
    ips = [e.ip for e in (edge.client, edge.server) if e.ip]
    if hosts:
        related["hosts"] = sorted(set(hosts))
    if ips:
        related["ip"] = sorted(set(ips))
    return related


def ecs_document(edge: Edge, version: str = __version__) -> dict[str, Any]:
    """The ECS document of one edge event."""
    protocol = transport(edge)
    document: dict[str, Any] = {
        "@timestamp": iso_time(edge.last_seen),
        "ecs": {"version": ECS_VERSION},
        "message": f"{qualified(edge.client)} calls {qualified(edge.server)}",
        "event": {
            "kind": "event",
            "category": ["network"],
            "type": ["connection", _TYPES.get(edge.event, "info")],
            "action": f"edge-{edge.event}",
            "id": event_key(edge),
            "dataset": "callmap.edges",
            "module": "callmap",
            "start": iso_time(edge.first_seen),
            "end": iso_time(edge.last_seen),
        },
        "source": _side(edge.client, None),
        "destination": _side(edge.server, protocol.port),
        "network": {
            "transport": protocol.name,
            "iana_number": str(protocol.number),
            "direction": _direction(edge.client, edge.server),
        },
        "observer": {"product": "callmap", "vendor": "callmap", "version": version},
        "orchestrator": {"type": "kubernetes", "cluster": {"name": edge.cluster}},
        "callmap": {
            "edge_id": edge.edge_id,
            "event": edge.event,
            "cluster": edge.cluster,
            "count": edge.count,
            "ports": list(edge.ports),
            "sources": list(edge.sources),
            "self_edge": edge.self_edge,
            "client": msgspec.to_builtins(edge.client),
            "server": msgspec.to_builtins(edge.server),
        },
    }
    if edge.udp_ports:
        document["callmap"]["udp_ports"] = list(edge.udp_ports)
    if edge.health is not None:  # since the last event; ECS counts bytes per side
        document["callmap"]["health"] = health_summary(edge.health)
        if edge.health.bytes_sent is not None:
            document["source"]["bytes"] = edge.health.bytes_sent
        if edge.health.bytes_received is not None:
            document["destination"]["bytes"] = edge.health.bytes_received
        if edge.health.bytes_sent is not None and edge.health.bytes_received is not None:
            document["network"]["bytes"] = edge.health.bytes_sent + edge.health.bytes_received
    related = _related(edge)
    if related:
        document["related"] = related
    return document


_encoder = msgspec.json.Encoder(order="sorted")


def ecs_json(edge: Edge, version: str = __version__) -> bytes:
    """The document as one line of compact JSON (keys sorted: replays match byte for byte)."""
    return _encoder.encode(ecs_document(edge, version))
