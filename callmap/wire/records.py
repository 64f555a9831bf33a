"""Every record callmap puts on Kafka, as frozen msgspec structs.

These classes *are* the wire contract: their field names are the JSON keys,
their defaults are what a decoder fills in when an older producer left a field
out, and ``docs/schemas/*.json`` is generated from them. Every record carries
``v``, its schema version; a record whose shape changes incompatibly gets a new
version and a new topic (``callmap.<kind>.v2``), never a silent reinterpretation.

Times are float seconds since the Unix epoch (UTC). IPs are strings in the
canonical text form of Python's ``ipaddress`` (IPv4-mapped IPv6 is written as
plain IPv4).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import msgspec

from callmap.wire.health import FlowHealth

SCHEMA_VERSION = 1

Transport = Literal["udp", "tcp"]
QType = Literal["A", "AAAA"]
Role = Literal["client", "server"]
ServiceType = Literal["ClusterIP", "Headless", "NodePort", "LoadBalancer", "ExternalName"]
EndpointType = Literal["workload", "service", "external", "node", "apiserver", "ip"]
EdgeEvent = Literal["new", "refresh", "expired"]
EdgeSource = Literal["dns", "socket-client", "socket-server"]


class Record(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False, gc=False):
    """Base of every wire record: immutable, keyword-only, versioned.

    Records are not tracked by the garbage collector (``gc=False``): being
    immutable they can't form reference cycles, and the stream app holds
    hundreds of thousands of them, which full collections would otherwise
    walk again and again.
    """

    # The version this code writes and accepts; a decoder rejects any other.
    version: ClassVar[int] = SCHEMA_VERSION
    v: int = SCHEMA_VERSION


# --- raw capture events -------------------------------------------------------


class DnsAnswer(Record, frozen=True, kw_only=True):
    """One DNS response a node saw, after following CNAMEs (topic callmap.dns.v1)."""

    cluster: str
    node: str
    ts: float
    client_ip: str
    server_ip: str
    transport: Transport
    qname: str
    qtype: QType
    answers: tuple[str, ...]
    cnames: tuple[str, ...] = ()
    ttl: int
    count: int = 1


class SocketObservation(Record, frozen=True, kw_only=True):
    """One connection a node saw: in its socket tables, or in its connection tracking.

    ``origin`` says where: ``proc`` is a socket of a scanned network
    namespace, seen from its own side (``role``). ``conntrack`` is a
    connection the node's connection tracking saw answered: always
    ``role: client``, ``local_*`` the side that opened it (on this node or
    not), ``remote_*`` the side that answered, after any destination NAT.
    ``dialled_ip`` and ``dialled_port`` are what the client asked for when NAT
    changed it (a Service's address); a socket-table observation has them
    when the node's connection tracking named its backend. ``transport`` is
    ``tcp`` for every socket-table observation; connection tracking also
    reports ``udp`` flows.

    ``health`` counts how the window's flows of this call went (conntrack),
    or how the socket did since its previous report (``proc`` with
    ``tcp_info``, client side only: its RTT and retransmits). A conntrack
    record whose health ``opened`` nothing (connects that failed, ends of
    flows reported before) is no sighting of a call: it carries health for an
    edge that exists, and ``first_seen`` is when its earliest flow began, so
    it resolves as those flows did.
    """

    cluster: str
    node: str
    ts: float
    netns: int
    pod_uid: str | None = None
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    role: Role
    first_seen: float
    origin: str = "proc"
    dialled_ip: str | None = None
    dialled_port: int | None = None
    transport: Transport = "tcp"
    health: FlowHealth | None = None


class DnsAnswerBatch(Record, frozen=True, kw_only=True):
    """One node's DNS answers of one flush window: one Kafka message."""

    cluster: str
    node: str
    records: tuple[DnsAnswer, ...]


class SocketBatch(Record, frozen=True, kw_only=True):
    """One node's socket observations of one flush window: one Kafka message."""

    cluster: str
    node: str
    records: tuple[SocketObservation, ...]


# --- identities (compacted topics) --------------------------------------------


class WorkloadRef(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The controller a pod belongs to, followed to the root (Deployment, CronJob, ...)."""

    kind: str
    name: str


class ServiceWorkload(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A workload that backs a service (from its EndpointSlices)."""

    namespace: str
    kind: str
    name: str


class ServicePort(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    port: int
    protocol: str = "TCP"
    name: str | None = None
    target_port: int | str | None = None
    node_port: int | None = None


class PodIdentity(Record, frozen=True, kw_only=True):
    """A pod and the IPs it holds (topic callmap.pods.v1, key = pod UID)."""

    cluster: str
    uid: str
    namespace: str
    name: str
    ips: tuple[str, ...] = ()
    node: str | None = None
    host_network: bool = False
    workload: WorkloadRef
    labels: dict[str, str] = {}
    created: float | None = None
    deleted: float | None = None
    ips_since: float | None = None
    """When the pod's status first reported ``ips``; None: unknown, ``created`` stands in."""
    hostname: str | None = None
    """``spec.hostname``: with ``subdomain``, the pod's per-pod name under a headless service."""
    subdomain: str | None = None
    """``spec.subdomain``: the headless service that names the pod by ``hostname``."""


class ServiceIdentity(Record, frozen=True, kw_only=True):
    """A service, its cluster IPs and the workloads behind it (key = namespace/name)."""

    cluster: str
    namespace: str
    name: str
    type: ServiceType
    cluster_ips: tuple[str, ...] = ()
    external_name: str | None = None
    ports: tuple[ServicePort, ...] = ()
    workloads: tuple[ServiceWorkload, ...] = ()
    deleted: float | None = None
    created: float | None = None
    workloads_since: float | None = None
    """When ``workloads`` became the workloads behind it; None: unknown, since ``created``."""
    exported: bool = False
    """A ServiceExport (MCS API) of the same name exists: ``<name>.<ns>.svc.clusterset.local``
    reaches this service's workloads from every cluster of the clusterset."""


class ClusterInfo(Record, frozen=True, kw_only=True):
    """A cluster's stable id and how to read it (topic callmap.clusters.v1, key = alias).

    The watch leader publishes it at the start of its term and then every
    ``heartbeat`` seconds, so an aggregator reading many clusters tells a
    quiet cluster (no calls) from one whose pipeline or mirror stopped (no
    heartbeat).
    """

    cluster: str
    """The readable alias every other record of this cluster carries (``--cluster``)."""
    uid: str
    """The cluster's id: the UID of its ``kube-system`` namespace (KEP-2149)."""
    domain: str = "cluster.local"
    """The cluster DNS domain."""
    ts: float
    """When this heartbeat was published."""
    heartbeat: float = 30.0
    """Seconds between heartbeats: a reader counts the cluster stale after a few missed."""


class NodeIdentity(Record, frozen=True, kw_only=True):
    """A node and its addresses (topic callmap.nodes.v1, key = node name)."""

    cluster: str
    name: str
    ips: tuple[str, ...] = ()
    deleted: float | None = None


# --- edges ------------------------------------------------------------------


class Endpoint(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One side of an edge. Which fields are set depends on ``type``:

    - workload: namespace, name, kind (and service when reached through one)
    - service: namespace, name (a service with no workloads behind it)
    - external: dns_name (and ip when only the address is known)
    - node: name, ip; apiserver: nothing else; ip: ip

    ``cluster`` is set on the global edges of an aggregator (every endpoint
    that lives in a cluster says which); on a cluster's own edges it is left
    out and the edge's ``cluster`` applies. Externals belong to no cluster.
    """

    type: EndpointType
    namespace: str | None = None
    name: str | None = None
    kind: str | None = None
    service: str | None = None
    dns_name: str | None = None
    ip: str | None = None
    cluster: str | None = None


class Edge(Record, frozen=True, kw_only=True):
    """The current state of one client -> server edge (key = edge_id).

    Identity is (cluster, client, server); everything else is an attribute
    merged over time. ``event`` says which lifecycle step this message is.
    ``ports`` are the server's TCP ports the client called, ``udp_ports`` its
    UDP ports (added later: a consumer that reads only ``ports`` sees a
    UDP-only edge as one without ports).

    ``health`` is how its connections went since the previous announcement of
    the edge, ``health_total`` since it was ``new`` (for counters); both None
    while no node's connection tracking reported on it.
    """

    edge_id: str
    event: EdgeEvent
    cluster: str
    client: Endpoint
    server: Endpoint
    ports: tuple[int, ...] = ()
    udp_ports: tuple[int, ...] = ()
    sources: tuple[EdgeSource, ...] = ()
    first_seen: float
    last_seen: float
    count: int = 1
    self_edge: bool = False
    health: FlowHealth | None = None
    health_total: FlowHealth | None = None


# --- inside the stream app (internal topics) ------------------------------------


class EdgeSighting(Record, frozen=True, kw_only=True):
    """Sightings of one edge, folded within one raw message (internal to streams).

    The stream app's first stage resolves raw events into sightings and
    repartitions them by ``edge_id``, so one worker owns each edge.
    """

    edge_id: str
    cluster: str
    client: Endpoint
    server: Endpoint
    ports: tuple[int, ...] = ()
    udp_ports: tuple[int, ...] = ()
    sources: tuple[EdgeSource, ...] = ()
    first_seen: float
    last_seen: float
    count: int = 1
    health: FlowHealth | None = None
    """How its connections went; a sighting with ``count`` 0 carries only this
    (its times mean nothing), for an edge its owner already has."""


class SightingBatch(Record, frozen=True, kw_only=True):
    """The sightings of one raw message whose edges share a partition (internal).

    Sent to that partition of the sightings topic, so that its owner merges
    many edges per message: per-message overhead dominates a stream app.
    """

    sightings: tuple[EdgeSighting, ...]


class PendingBatch(Record, frozen=True, kw_only=True):
    """Raw events waiting for identities that have not arrived yet (internal).

    They are resolved again at ``due``, then with raw ``ip`` endpoints for
    whatever is still unknown: late events wait, they are never dropped.
    """

    cluster: str
    node: str
    due: float
    dns: tuple[DnsAnswer, ...] = ()
    sockets: tuple[SocketObservation, ...] = ()


# --- operations -----------------------------------------------------------------


class StageStats(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What one pipeline stage saw, emitted and dropped (by reason) in an interval."""

    seen: int = 0
    emitted: int = 0
    dropped: dict[str, int] = {}


DROP_KERNEL = "kernel_drop"
"""Frames the kernel dropped before capture read them (its socket buffer was full)."""
DROP_OVERFLOW = "buffer_overflow"
"""Records capture dropped because its outbox was full while Kafka was away."""
DROP_TOO_OLD = "buffer_too_old"
"""Records capture dropped because they waited for Kafka longer than its age bound."""
LOSS_REASONS: tuple[str, ...] = (DROP_KERNEL, DROP_OVERFLOW, DROP_TOO_OLD)
"""Drop reasons of CaptureStats that mean data was lost; the others are filters (a frame
that is not DNS, a connection reported already)."""


class CaptureStats(Record, frozen=True, kw_only=True):
    """Per node and interval: each capture stage's counters (topic callmap.stats.v1)."""

    cluster: str
    node: str
    ts: float
    interval: float
    stages: dict[str, StageStats] = {}
    """What changed in the ``interval`` seconds before ``ts``."""
    boot_id: str = ""
    """A random id of the agent process: a new one means its counters began again."""
    seq: int = 0
    """The record's number since the process began (1, 2, ...): a gap means records
    were replaced before they were sent (``totals`` covers them)."""
    totals: dict[str, StageStats] = {}
    """Running totals since the process began: loss is read from these, so that no
    count is missed when an interval's record is."""


class DeadLetter(Record, frozen=True, kw_only=True):
    """A message that a stage could not or would not take, with where it came from and
    why."""

    ts: float
    stage: str
    error: str
    topic: str
    partition: int | None = None
    offset: int | None = None
    key_b64: str | None = None
    payload_b64: str
    cluster: str | None = None
    reason: str = ""
    """Why, in one word: ``undecodable``, ``oversized`` (over a byte or record cap),
    ``edge_cap`` (a client over its edge cap), or a sink's own reason; empty from
    older writers."""


RECORD_TYPES: tuple[type[Record], ...] = (
    DnsAnswer,
    SocketObservation,
    DnsAnswerBatch,
    SocketBatch,
    PodIdentity,
    ServiceIdentity,
    NodeIdentity,
    ClusterInfo,
    Edge,
    CaptureStats,
    DeadLetter,
    EdgeSighting,
    SightingBatch,
    PendingBatch,
)
