"""Edge events as OCSF Network Activity (class 4001) events (``callmap sink ocsf``).

Lifecycle events map to activities: ``new`` is Open (1), ``refresh`` is
Traffic (6), ``expired`` is Close (2). The client is ``src_endpoint``, the
server ``dst_endpoint``; workloads are named ``name.namespace`` with their
workload kind in ``type``; ``metadata.uid`` is the event key (a SIEM can drop a
replay by it) and ``metadata.correlation_uid`` the edge id. On global edges,
each endpoint's cluster is its ``zone`` (the network segment it lives in:
clusters are address spaces of their own). What OCSF has no
attribute for (every port, sources, Kubernetes identities, the health's
counts, round-trip times and retransmits) is kept under ``unmapped.callmap``;
``unmapped.callmap.health`` is :func:`sinks.health.health_summary` (RTT as
``rtt_p50_ms``, ``rtt_p99_ms``, ``rtt_mean_ms``). Bytes go to ``traffic``.
Strings stay verbatim: JSON escapes them. Pure.
"""

from __future__ import annotations

from typing import Any

import msgspec

from callmap import __version__
from callmap.wire import Edge, Endpoint
from sinks.changes import event_key
from sinks.endpoints import label
from sinks.health import health_summary
from sinks.service.formats.transport import transport

OCSF_VERSION = "1.3.0"
CLASS_UID = 4001
CATEGORY_UID = 4
_ACTIVITIES = {"new": (1, "Open"), "refresh": (6, "Traffic"), "expired": (2, "Close")}


def _endpoint(endpoint: Endpoint, port: int | None) -> dict[str, Any]:
    value: dict[str, Any] = {}
    if endpoint.type in ("workload", "service"):
        value["name"] = f"{endpoint.name}.{endpoint.namespace}"
        value["type"] = endpoint.kind or "Service"
        if endpoint.service:
            value["svc_name"] = endpoint.service
    elif endpoint.type == "external":
        value["hostname"] = label(endpoint)
        value["type"] = "External"
    elif endpoint.type == "node":
        value["hostname"] = label(endpoint)
        value["type"] = "Node"
    elif endpoint.type == "apiserver":
        value["name"] = "kubernetes.default"
        value["type"] = "Kubernetes API server"
    if endpoint.ip:
        value["ip"] = endpoint.ip
    if endpoint.cluster is not None:
        value["zone"] = endpoint.cluster
    if port is not None:
        value["port"] = port
    return value or {"type": endpoint.type}


def ocsf_event(edge: Edge, version: str = __version__) -> dict[str, Any]:
    """The OCSF Network Activity event of one edge event."""
    activity_id, activity_name = _ACTIVITIES.get(edge.event, (99, "Other"))
    protocol = transport(edge)
    event: dict[str, Any] = {
        "activity_id": activity_id,
        "activity_name": activity_name,
        "category_uid": CATEGORY_UID,
        "category_name": "Network Activity",
        "class_uid": CLASS_UID,
        "class_name": "Network Activity",
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": f"Network Activity: {activity_name}",
        "severity_id": 1,
        "severity": "Informational",
        "status_id": 1,
        "status": "Success",
        "time": int(edge.last_seen * 1000),
        "start_time": int(edge.first_seen * 1000),
        "end_time": int(edge.last_seen * 1000),
        "count": edge.count,
        "message": f"{label(edge.client)} calls {label(edge.server)}",
        "metadata": {
            "version": OCSF_VERSION,
            "uid": event_key(edge),
            "correlation_uid": edge.edge_id,
            "product": {"name": "callmap", "vendor_name": "callmap", "version": version},
            "tenant_uid": edge.cluster,
        },
        "src_endpoint": _endpoint(edge.client, None),
        "dst_endpoint": _endpoint(edge.server, protocol.port),
        "connection_info": {
            "protocol_name": protocol.name,
            "protocol_num": protocol.number,
            "direction_id": 0,
        },
        "is_src_dst_assignment_known": True,
        "unmapped": {
            "callmap": {
                "cluster": edge.cluster,
                "event": edge.event,
                "ports": list(edge.ports),
                "sources": list(edge.sources),
                "self_edge": edge.self_edge,
                "client": msgspec.to_builtins(edge.client),
                "server": msgspec.to_builtins(edge.server),
            }
        },
    }
    if edge.udp_ports:
        event["unmapped"]["callmap"]["udp_ports"] = list(edge.udp_ports)
    if edge.health is not None:  # since the last event
        event["unmapped"]["callmap"]["health"] = health_summary(edge.health)
        traffic = {
            key: value
            for key, value in (
                ("bytes_out", edge.health.bytes_sent),
                ("bytes_in", edge.health.bytes_received),
            )
            if value is not None
        }
        if traffic:
            event["traffic"] = {**traffic, "bytes": sum(traffic.values())}
    return event


_encoder = msgspec.json.Encoder(order="sorted")


def ocsf_json(edge: Edge, version: str = __version__) -> bytes:
    """The event as one line of compact JSON (keys sorted, so replays match byte for byte)."""
    return _encoder.encode(ocsf_event(edge, version))
