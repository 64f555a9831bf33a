"""The stream app's work on one message, without Faust or Kafka.

:class:`Identities` applies identity-topic messages to one time-versioned
store per cluster. :class:`ResolveStage` turns one raw message into the edge
sightings that must go out now (:mod:`streams.combine` holds back repeats,
:mod:`streams.routes` remembers resolutions, :mod:`streams.repeats` knows
records seen before by their bytes, without decoding them) and the events
that must wait for identities (a ``PendingBatch`` due after the grace
period). The Faust agents in :mod:`streams.faustapp` only move bytes between
topics and these classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from callmap.counters import Counters
from callmap.wire import (
    DNS,
    NODES,
    PODS,
    SERVICES,
    DnsAnswer,
    DnsAnswerBatch,
    EdgeSighting,
    NodeIdentity,
    PendingBatch,
    PodIdentity,
    ServiceIdentity,
    SocketBatch,
    SocketObservation,
    decode,
)
from callmap.wire.topics import TopicSpec, split_identity_key
from streams.caps import DEFAULT_BATCH_RECORDS, Caps, within_caps
from streams.combine import Combiner
from streams.identity import DEFAULT_CLOCK_SKEW, DEFAULT_DELETION_GRACE, IdentityStore
from streams.repeats import Applied, Heads, Scan, head_of
from streams.resolve import Resolver
from streams.routes import Routes

DEFAULT_GRACE = 60.0
_IDENTITY_SPECS = {spec.name: spec for spec in (PODS, SERVICES, NODES)}


@dataclass(frozen=True, slots=True)
class ResolveSettings:
    """How events are resolved."""

    cluster_domain: str = "cluster.local"
    """The cluster DNS domain; names outside it are external."""
    excluded_namespaces: frozenset[str] = frozenset()
    """Edges touching these namespaces are dropped (and counted)."""
    grace: float = DEFAULT_GRACE
    """Seconds an event waits for identities that have not arrived."""
    clock_skew: float = DEFAULT_CLOCK_SKEW
    """Seconds an event may precede its pod's creation (different clocks)."""
    deletion_grace: float = DEFAULT_DELETION_GRACE
    """Seconds a deleted pod still answers for its IPs if nobody else holds them."""


class Identities:
    """One identity store per cluster, fed from the identity topics."""

    def __init__(self, settings: ResolveSettings, counters: Counters) -> None:
        self._settings = settings
        self._counters = counters
        self.resolvers: dict[str, Resolver] = {}

    def resolver(self, cluster: str) -> Resolver:
        resolver = self.resolvers.get(cluster)
        if resolver is None:
            store = IdentityStore(
                clock_skew=self._settings.clock_skew,
                deletion_grace=self._settings.deletion_grace,
            )
            resolver = self.resolvers[cluster] = Resolver(
                store,
                self._counters.stage("resolve"),
                cluster_domain=self._settings.cluster_domain,
                excluded_namespaces=self._settings.excluded_namespaces,
            )
        return resolver

    def apply(self, topic: str, key: bytes, value: bytes | None) -> None:
        """Apply one identity message (a tombstone when ``value`` is None).

        A pod's tombstone names no cluster: it is applied to every store.
        Undecodable messages raise :class:`~callmap.errors.WireDecodeError`.
        """
        stage = self._counters.stage("identities")
        stage.seen += 1
        spec = _IDENTITY_SPECS[topic]
        cluster, local = split_identity_key(spec, key)
        if value is None:
            for name, resolver in self.resolvers.items():
                if cluster is None or cluster == name:
                    _put(resolver.store, topic, local, None)
            stage.emitted += 1
            return
        record = decode(spec, value)
        assert isinstance(record, PodIdentity | ServiceIdentity | NodeIdentity)
        _put(self.resolver(record.cluster).store, topic, local, record)
        stage.emitted += 1


def _put(
    store: IdentityStore,
    topic: str,
    key: str,
    record: PodIdentity | ServiceIdentity | NodeIdentity | None,
) -> None:
    if topic == PODS.name:
        store.put_pod(key, record if isinstance(record, PodIdentity) else None)
    elif topic == SERVICES.name:
        store.put_service(key, record if isinstance(record, ServiceIdentity) else None)
    else:
        store.put_node(key, record if isinstance(record, NodeIdentity) else None)


class ResolveStage:
    """Resolves raw batches into sightings; see the module docstring."""

    def __init__(
        self,
        identities: Identities,
        settings: ResolveSettings,
        counters: Counters,
        combiner: Combiner | None = None,
        *,
        max_records: int = DEFAULT_BATCH_RECORDS,
        repeats: bool = True,
    ) -> None:
        """``max_records``: the record cap of one raw message (:meth:`message`);
        ``repeats``: know repeated records by their bytes (:mod:`streams.repeats`)."""
        self._identities = identities
        self._settings = settings
        self._counters = counters
        self.combiner = combiner if combiner is not None else Combiner()
        self._max_records = max_records
        self._repeats = repeats
        self._heads = Heads()
        self._routes: dict[str, Routes] = {}

    def message(
        self, spec: TopicSpec, value: bytes, now: float
    ) -> tuple[list[EdgeSighting], PendingBatch | None]:
        """:meth:`batch` for a raw message (``spec`` DNS or SOCKETS) as it came off its topic.

        A message whose records are all known by their bytes
        (:mod:`streams.repeats`) is not decoded: its sightings are counted
        straight into the combiner. Raises
        :class:`~callmap.errors.WireDecodeError` when the message does not
        decode, :class:`~streams.caps.Oversized` when it holds more records than
        the cap.
        """
        layout = head_of(value)
        routes: Routes | None = None
        found: Applied | Scan | None = None
        if layout is not None and (cluster := self._heads.cluster(layout[0])) is not None:
            routes = self._routes_of(cluster)
            routes.begin()
            found = self._scan(routes, spec, value, layout, now)
            if isinstance(found, Applied):
                return self._applied(found)
        batch = within_caps(decode(spec, value), Caps(batch_records=self._max_records))
        assert isinstance(batch, DnsAnswerBatch | SocketBatch)
        if routes is None:
            routes = self._routes_of(batch.cluster)
            routes.begin()
            if layout is not None:
                self._heads.learn(layout[0], batch.cluster)
                found = self._scan(routes, spec, value, layout, now)
                if isinstance(found, Applied):
                    return self._applied(found)
        scan = found if isinstance(found, Scan) and len(found.hits) == len(batch.records) else None
        return self._resolve(routes, batch, now, final=False, scan=scan)

    def _scan(
        self,
        routes: Routes,
        spec: TopicSpec,
        value: bytes,
        layout: tuple[bytes, int, int],
        now: float,
    ) -> Applied | Scan | None:
        """What the routes' repeats of ``spec``'s records find in the message."""
        repeats = routes.dns_repeats if spec.name == DNS.name else routes.socket_repeats
        if repeats is None:
            return None
        _, start, end = layout
        seen = self.combiner.seen_each
        return repeats.scan(value, start, end, seen, now, self._max_records)

    def _applied(self, applied: Applied) -> tuple[list[EdgeSighting], PendingBatch | None]:
        self._counters.stage("sightings").seen += applied.sightings
        self._counters.events["resolved"] += applied.records
        return self.combiner.urgent(), None

    def batch(
        self, batch: DnsAnswerBatch | SocketBatch | PendingBatch, now: float, *, final: bool
    ) -> tuple[list[EdgeSighting], PendingBatch | None]:
        """The sightings that must go out now, and what waits for identities.

        Repeats of pairs the owners already know are held by the combiner
        (``due`` and ``drain`` release them).
        """
        routes = self._routes_of(batch.cluster)
        routes.begin()
        return self._resolve(routes, batch, now, final=final)

    def _resolve(
        self,
        routes: Routes,
        batch: DnsAnswerBatch | SocketBatch | PendingBatch,
        now: float,
        *,
        final: bool,
        scan: Scan | None = None,
    ) -> tuple[list[EdgeSighting], PendingBatch | None]:
        dns: Sequence[DnsAnswer] = ()
        sockets: Sequence[SocketObservation] = ()
        if isinstance(batch, PendingBatch):
            dns, sockets = batch.dns, batch.sockets
        elif isinstance(batch, DnsAnswerBatch):
            dns = batch.records
        else:
            sockets = batch.records
        late_dns: list[DnsAnswer] = []
        late_sockets: list[SocketObservation] = []
        resolver = self._identities.resolver(batch.cluster)
        fallbacks, ambiguous = resolver.fallbacks, resolver.memory.ambiguous
        dns_scan = scan if isinstance(batch, DnsAnswerBatch) else None
        socket_scan = scan if isinstance(batch, SocketBatch) else None
        sightings = routes.answers(dns, now, final, late_dns, dns_scan)
        sightings += routes.connections(sockets, now, final, late_sockets, socket_scan)
        self._counters.stage("sightings").seen += sightings
        events = self._counters.events
        late = len(late_dns) + len(late_sockets)
        unresolved = resolver.fallbacks - fallbacks
        events["resolved_after_wait" if final else "resolved"] += len(dns) + len(sockets) - late
        if unresolved:
            events["unresolved"] += unresolved
        if resolver.memory.ambiguous != ambiguous:
            events["ambiguous_dns_name"] += resolver.memory.ambiguous - ambiguous
        pending = None
        if late:
            events["late"] += late
            pending = PendingBatch(
                cluster=batch.cluster,
                node=batch.node,
                due=now + self._settings.grace,
                dns=tuple(late_dns),
                sockets=tuple(late_sockets),
            )
        return self.combiner.urgent(), pending

    def due(self, now: float) -> list[EdgeSighting]:
        """Held repeats whose time has come."""
        return self.combiner.due(now)

    def drain(self) -> list[EdgeSighting]:
        """Every held repeat, before the worker stops."""
        return self.combiner.drain()

    def _routes_of(self, cluster: str) -> Routes:
        routes = self._routes.get(cluster)
        if routes is None:
            resolver = self._identities.resolver(cluster)
            routes = self._routes[cluster] = Routes(
                cluster, resolver, self.combiner, repeats=self._repeats
            )
        return routes
