"""SIEM feeds: OCSF events satisfy the Network Activity class; syslog frames and metrics."""

from __future__ import annotations

import jsonschema
from prometheus_client import CollectorRegistry, generate_latest

from sinks.service.formats.cef import FACILITIES, SyslogFormat, octet_frame, syslog_message
from sinks.service.formats.ocsf import ocsf_event
from sinks.service.stats import SinkCollector, SinkStats

# What OCSF 1.3 requires of a Network Activity event (base event + class 4001),
# and the shapes of the objects callmap fills.
ENDPOINT = {
    "type": "object",
    "minProperties": 1,
    "properties": {
        "name": {"type": "string"},
        "hostname": {"type": "string"},
        "ip": {"type": "string"},
        "port": {"type": "integer"},
        "svc_name": {"type": "string"},
        "type": {"type": "string"},
    },
}
NETWORK_ACTIVITY = {
    "type": "object",
    "required": [
        "activity_id",
        "category_uid",
        "class_uid",
        "type_uid",
        "time",
        "severity_id",
        "metadata",
    ],
    "anyOf": [{"required": ["src_endpoint"]}, {"required": ["dst_endpoint"]}],
    "properties": {
        "activity_id": {"enum": [0, 1, 2, 3, 4, 5, 6, 7, 99]},
        "category_uid": {"const": 4},
        "class_uid": {"const": 4001},
        "severity_id": {"enum": [0, 1, 2, 3, 4, 5, 6, 99]},
        "status_id": {"enum": [0, 1, 2, 99]},
        "time": {"type": "integer"},
        "count": {"type": "integer"},
        "metadata": {
            "type": "object",
            "required": ["product", "version"],
            "properties": {
                "product": {"type": "object", "required": ["name"]},
                "version": {"type": "string"},
                "uid": {"type": "string"},
            },
        },
        "src_endpoint": ENDPOINT,
        "dst_endpoint": ENDPOINT,
        "connection_info": {
            "type": "object",
            "properties": {
                "protocol_num": {"type": "integer"},
                "direction_id": {"type": "integer"},
            },
        },
        "unmapped": {"type": "object"},
    },
}


def test_ocsf_events_satisfy_network_activity(corpus) -> None:
    for edge in corpus.edges:
        event = ocsf_event(edge)
        jsonschema.validate(event, NETWORK_ACTIVITY)
        assert event["type_uid"] == 4001 * 100 + event["activity_id"]


def test_lifecycle_events_map_to_activities(corpus) -> None:
    activities = {edge.event: ocsf_event(edge)["activity_name"] for edge in corpus.edges}
    assert activities == {"new": "Open", "refresh": "Traffic", "expired": "Close"}


def test_syslog_priority_and_octet_counting(corpus) -> None:
    new = next(edge for edge in corpus.edges if edge.event == "new")
    message = syslog_message(new, SyslogFormat(hostname="h", facility=FACILITIES["local4"]))
    assert message.startswith(b"<165>1 ")  # local4 (20) * 8 + notice (5)
    framed = octet_frame(message)
    length, _, rest = framed.partition(b" ")
    assert int(length) == len(rest) == len(message)


def test_sink_metrics_are_exposed_with_their_names() -> None:
    stats = SinkStats("sqlite", received=5, written=4, retried=2)
    stats.fail("undecodable")
    registry = CollectorRegistry()
    registry.register(SinkCollector(stats, lambda: 3))
    text = generate_latest(registry).decode()
    for line in (
        'callmap_sink_received_total{sink="sqlite"} 5.0',
        'callmap_sink_written_total{sink="sqlite"} 4.0',
        'callmap_sink_retried_total{sink="sqlite"} 2.0',
        'callmap_sink_failed_total{reason="undecodable",sink="sqlite"} 1.0',
        'callmap_sink_buffered{sink="sqlite"} 3.0',
    ):
        assert line in text
