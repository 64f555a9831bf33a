"""Edge events as CEF, carried in RFC 5424 syslog messages (``callmap sink syslog``).

A message looks like::

    <133>1 2023-11-14T22:13:20.250Z node-a callmap 4242 edge-new
      [callmap@32473 edgeId="3f2a..." event="new" cluster="prod"]
      CEF:0|callmap|callmap|0.1.0|edge-new|New call edge|5|rt=... shost=frontend.shop ...

- Header fields are printable US-ASCII (others become ``_``), cut to RFC 5424's
  lengths. The timestamp is the event's last sighting, so a replayed event is
  the same message byte for byte.
- Structured-data values escape ``"``, ``\\`` and ``]``; CEF escapes ``|`` and
  ``\\`` in its header, ``=``, ``\\`` and line breaks in extension values. Other
  control characters become U+FFFD. MSG carries no BOM: SIEMs expect ``CEF:``
  at its start.
- ``externalId`` (and ``eventId`` in structured data) is the event key of
  :func:`sinks.changes.event_key`: a SIEM can drop a replay by it.
- Health (since the edge's previous event): ``in=``/``out=`` bytes,
  ``cn1``-``cn3`` failed connects, resets and connections opened; where the
  nodes read ``tcp_info``, ``cfp1`` (label ``rttP99Ms``, CEF's floating-point
  custom field) the p99 round-trip time in ms and ``flexNumber1`` (label
  ``retransmits``) the segments retransmitted: CEF has only three ``cnN``.
- ``deviceExternalId`` (and ``cluster``) is the edge's cluster. A global edge
  names each side's cluster too: ``flexString1`` (label ``clientCluster``) and
  ``flexString2`` (``serverCluster``), and ``clientCluster`` and
  ``serverCluster`` in structured data; a cluster's own edges leave them out.

With ``payload="ecs"`` MSG is the event's ECS document instead
(:mod:`sinks.service.formats.ecs`), one line of JSON, for receivers that
parse JSON out of syslog (Fluent Bit, Filebeat's syslog input, rsyslog's
mmjsonparse). ``octet_frame`` adds RFC 6587 octet-counting framing for TCP
and TLS. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from callmap import __version__
from callmap.wire import Edge, Endpoint, FlowHealth
from sinks.changes import event_key
from sinks.endpoints import label, port_labels, qualified
from sinks.escape import cef_header, cef_value, sd_param_value, syslog_header_field
from sinks.health import rtt_fields
from sinks.service.formats.ecs import ecs_json
from sinks.service.formats.transport import transport
from sinks.times import iso_time

FACILITIES = {
    "kern": 0, "user": 1, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10,
    "local0": 16, "local1": 17, "local2": 18, "local3": 19,
    "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip
# Syslog severity and CEF severity (0-10) per lifecycle event.
_SEVERITY = {"new": (5, 5), "refresh": (6, 1), "expired": (6, 3)}
_NAMES = {"new": "New call edge", "refresh": "Call edge seen again", "expired": "Call edge expired"}


@dataclass(frozen=True, slots=True)
class SyslogFormat:
    """What every message of one sender shares."""

    hostname: str
    """HOSTNAME: this sender (the node or pod name)."""
    facility: int = FACILITIES["local0"]
    app_name: str = "callmap"
    procid: str | None = None
    sd_id: str = "callmap@32473"
    """Structured-data id; 32473 is the example enterprise number of RFC 5612."""
    version: str = __version__
    payload: str = "cef"
    """What MSG holds: ``cef`` (the CEF record) or ``ecs`` (the ECS document as JSON)."""

    @property
    def cuttable(self) -> bool:
        """Whether a message cut to a size limit still says something: a CEF record
        loses its last fields; cut JSON is no JSON."""
        return self.payload == "cef"


def _host(endpoint: Endpoint) -> str:
    """A host-like name: ``name.namespace`` for workloads, else the endpoint's own name."""
    if endpoint.type in ("workload", "service"):
        return f"{endpoint.name}.{endpoint.namespace}"
    return label(endpoint)


def _health_fields(health: FlowHealth | None) -> list[tuple[str, str]]:
    """Bytes, when counted; connects failed, resets and connections opened as custom
    numbers; the p99 round-trip time and retransmits, when known: how the calls went
    since the last event.

    CEF counts bytes relative to the source (the client): ``in`` (bytesIn) is what
    flowed from source to destination, ``out`` (bytesOut) what came back, as the
    CEF standard defines them and as decoders map them (``in`` to ECS
    ``source.bytes``, ``out`` to ``destination.bytes``)."""
    if health is None:
        return []
    fields = [
        ("cn1Label", "failedConnects"),
        ("cn1", str(health.failed)),
        ("cn2Label", "resets"),
        ("cn2", str(health.resets)),
        ("cn3Label", "connectionsOpened"),
        ("cn3", str(health.opened)),
    ]
    if health.bytes_sent is not None:
        fields.append(("in", str(health.bytes_sent)))
    if health.bytes_received is not None:
        fields.append(("out", str(health.bytes_received)))
    tcp = rtt_fields(health)
    if "rtt_p99_ms" in tcp:
        fields += [("cfp1Label", "rttP99Ms"), ("cfp1", str(tcp["rtt_p99_ms"]))]
    if "retransmits" in tcp:
        fields += [("flexNumber1Label", "retransmits"), ("flexNumber1", str(tcp["retransmits"]))]
    return fields


def cef_message(edge: Edge, version: str = __version__) -> str:
    """The CEF record of one edge event."""
    _, severity = _SEVERITY.get(edge.event, (6, 1))
    protocol = transport(edge)
    header = [
        "CEF:0",
        "callmap",
        "callmap",
        cef_header(version),
        cef_header(f"edge-{edge.event}"),
        cef_header(_NAMES.get(edge.event, edge.event)),
        str(severity),
    ]
    fields: list[tuple[str, str]] = [
        ("rt", str(int(edge.last_seen * 1000))),
        ("start", str(int(edge.first_seen * 1000))),
        ("end", str(int(edge.last_seen * 1000))),
        ("cnt", str(edge.count)),
        ("act", edge.event),
        ("proto", protocol.name.upper()),
        ("externalId", event_key(edge)),
        ("deviceExternalId", edge.cluster),
        ("shost", _host(edge.client)),
        ("dhost", _host(edge.server)),
    ]
    if edge.client.ip:
        fields.append(("src", edge.client.ip))
    if edge.server.ip:
        fields.append(("dst", edge.server.ip))
    if protocol.port is not None:
        fields.append(("dpt", str(protocol.port)))
    fields += [
        ("cs1Label", "edgeId"),
        ("cs1", edge.edge_id),
        ("cs2Label", "client"),
        ("cs2", qualified(edge.client)),
        ("cs3Label", "server"),
        ("cs3", qualified(edge.server)),
        ("cs4Label", "ports"),
        ("cs4", ",".join(port_labels(edge))),
        ("cs5Label", "sources"),
        ("cs5", ",".join(edge.sources)),
    ]
    if edge.server.service:
        fields += [("cs6Label", "service"), ("cs6", edge.server.service)]
    fields += _health_fields(edge.health)
    if edge.client.cluster is not None:
        fields += [("flexString1Label", "clientCluster"), ("flexString1", edge.client.cluster)]
    if edge.server.cluster is not None:
        fields += [("flexString2Label", "serverCluster"), ("flexString2", edge.server.cluster)]
    extension = " ".join(f"{key}={cef_value(value)}" for key, value in fields)
    return "|".join(header) + "|" + extension


def syslog_message(edge: Edge, form: SyslogFormat) -> bytes:
    """One RFC 5424 message (no framing) carrying the CEF record of ``edge``, or its
    ECS document (``form.payload``)."""
    severity, _ = _SEVERITY.get(edge.event, (6, 1))
    priority = form.facility * 8 + severity
    params = {"eventId": event_key(edge), "edgeId": edge.edge_id, "event": edge.event}
    params["cluster"] = edge.cluster
    if edge.client.cluster is not None:
        params["clientCluster"] = edge.client.cluster
    if edge.server.cluster is not None:
        params["serverCluster"] = edge.server.cluster
    sd_params = " ".join(f'{name}="{sd_param_value(value)}"' for name, value in params.items())
    header = " ".join(
        [
            f"<{priority}>1",
            iso_time(edge.last_seen),
            syslog_header_field(form.hostname, 255),
            syslog_header_field(form.app_name, 48),
            syslog_header_field(form.procid, 128),
            syslog_header_field(f"edge-{edge.event}", 32),
        ]
    )
    sd_id = syslog_header_field(form.sd_id, 32)
    sd_id = sd_id.replace("=", "_").replace("]", "_").replace('"', "_")
    structured = f"[{sd_id} {sd_params}]"
    if form.payload == "ecs":
        return f"{header} {structured} ".encode() + ecs_json(edge, form.version)
    return f"{header} {structured} {cef_message(edge, form.version)}".encode()


def octet_frame(message: bytes) -> bytes:
    """RFC 6587 octet counting: ``LENGTH SP MESSAGE``."""
    return str(len(message)).encode() + b" " + message
