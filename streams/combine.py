"""What the resolve stage tells edge owners at once, and what it holds back. Pure.

Steady traffic repeats itself: the same clients call the same servers window
after window, and every repeat only moves an edge's ``last_seen`` and
``count``. Sending each repeat to the edge's owner costs a message, a decode
and a table write that nobody waits for. The :class:`Combiner` is the resolve
stage's local pre-aggregation (a combiner, in map-reduce terms). It keeps one
:class:`Slot` per (client, server) endpoint pair:

- a sighting of a pair it has not forwarded lately, or one that brings
  something new (a TCP or UDP port, a source), is *urgent*: it goes out with the batch
  that saw it (:meth:`Combiner.urgent`), folded with everything that batch
  and earlier held repeats saw of the pair. It may be a ``new`` edge, and it
  changes what the owner announces;
- a repeat is folded into the slot and goes out once it has waited
  ``interval`` seconds (:meth:`Combiner.due`), or when the worker stops
  (:meth:`Combiner.drain`);
- health (how a pair's connections went, from connection tracking) is held
  like a repeat and goes out with the pair's next sighting, or alone as a
  sighting with ``count`` 0 (:meth:`Combiner.add_health`);
- pairs idle for ``forget_after`` seconds are forgotten (and the least
  recently active beyond ``max_edges``): their next sighting is urgent again.

So ``new`` announcements are never delayed; ``last_seen``, ``count`` and
refreshes lag by at most ``interval``; and a worker killed with SIGKILL loses
at most ``interval`` seconds of repeats (counts and last-seen times, never an
edge, a port or a source). docs/streams.md states this in the delivery
guarantee. With ``interval`` 0 every sighting is urgent.

**The per-client cap.** One noisy pod (a scanner, a crawler) could make edges
without end, and each lives in an owner's memory for the edge TTL. With
``max_edges_per_client`` set, a client reaches at most that many servers
within ``edge_ttl``: a pair beyond it is not forwarded (counted, and reported
once per client and :data:`REPORT_EVERY` through :meth:`Combiner.take_capped`),
until servers the client no longer calls age out. Only a pair's first
sightings pay for the check; the fast path of known repeats does not.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from callmap.wire import EdgeSighting, Endpoint, FlowHealth
from callmap.wire.records import EdgeSource
from streams.edges import DEFAULT_TTL, edge_id

DEFAULT_COMBINE_INTERVAL = 5.0
DEFAULT_FORGET_AFTER = 600.0
DEFAULT_MAX_EDGES = 200_000
DEFAULT_MAX_EDGES_PER_CLIENT = 2_000
REPORT_EVERY = 3600.0
"""Seconds between two reports of one client over its cap."""


class Client:
    """The servers one client reached lately, for the per-client cap."""

    __slots__ = ("checked_at", "reported_at", "servers")

    def __init__(self) -> None:
        self.servers: dict[Endpoint, float] = {}  # server -> when the pair was last admitted
        self.checked_at = 0.0  # when entries were last aged out
        self.reported_at = -REPORT_EVERY


class Slot:
    """One (client, server) pair: what its owner knows, and what it has not heard yet."""

    __slots__ = (
        "active_at",
        "admitted",
        "client",
        "cluster",
        "count",
        "edge_id",
        "first",
        "health",
        "known",
        "known_ports",
        "known_sources",
        "known_udp_ports",
        "last",
        "ports",
        "server",
        "since",
        "sources",
        "udp_ports",
        "urgent",
    )

    def __init__(self, cluster: str, client: Endpoint, server: Endpoint) -> None:
        self.cluster = cluster
        self.client = client
        self.server = server
        self.edge_id = edge_id(cluster, client, server)
        self.known = False  # the owner has heard of this pair since it was last forgotten
        self.known_ports: set[int] = set()
        self.known_udp_ports: set[int] = set()
        self.known_sources: set[EdgeSource] = set()
        self.count = 0  # sightings not forwarded yet; the fields below describe them
        self.first = 0.0
        self.last = 0.0
        self.ports: set[int] = set()
        self.udp_ports: set[int] = set()
        self.sources: set[EdgeSource] = set()
        self.health: FlowHealth | None = None  # how the connections went, not forwarded yet
        self.since = 0.0  # processing time of the first of them
        self.urgent = False
        self.active_at = 0.0
        self.admitted = False  # within its client's cap (checked until it is)

    def sighting(self) -> EdgeSighting:
        """What the slot holds, as one sighting; the slot is empty after."""
        self.known = self.known or self.count > 0  # health alone tells the owner no edge
        self.known_ports |= self.ports
        self.known_udp_ports |= self.udp_ports
        self.known_sources |= self.sources
        sighting = EdgeSighting(
            edge_id=self.edge_id,
            cluster=self.cluster,
            client=self.client,
            server=self.server,
            ports=tuple(sorted(self.known_ports)),
            udp_ports=tuple(sorted(self.known_udp_ports)),
            sources=tuple(sorted(self.known_sources)),
            first_seen=self.first,
            last_seen=self.last,
            count=self.count,
            health=self.health,
        )
        self.count, self.urgent, self.health = 0, False, None
        self.ports, self.udp_ports, self.sources = set(), set(), set()
        return sighting

    @property
    def holding(self) -> bool:
        """Something not forwarded yet: sightings, or health alone."""
        return bool(self.count) or self.health is not None

    def forget(self) -> None:
        self.known = False
        self.known_ports, self.known_udp_ports, self.known_sources = set(), set(), set()


class Combiner:
    """Slots of the pairs this worker saw; see the module docstring."""

    def __init__(
        self,
        interval: float = DEFAULT_COMBINE_INTERVAL,
        *,
        forget_after: float = DEFAULT_FORGET_AFTER,
        max_edges: int = DEFAULT_MAX_EDGES,
        max_edges_per_client: int = 0,
        edge_ttl: float = DEFAULT_TTL,
    ) -> None:
        """``max_edges_per_client`` 0: no cap."""
        self.interval = interval
        self.forget_after = forget_after
        self.max_edges = max_edges
        self.max_edges_per_client = max_edges_per_client
        self.edge_ttl = edge_ttl
        self._clients: dict[tuple[str, Endpoint], Client] = {}
        self._capped: list[EdgeSighting] = []
        self._dropped = 0
        self._slots: dict[tuple[str, Endpoint, Endpoint], Slot] = {}
        self._urgent: list[Slot] = []
        self._waiting: deque[tuple[float, Slot]] = deque()  # (since, slot), oldest first
        self._swept_at = 0.0

    def slot(self, cluster: str, client: Endpoint, server: Endpoint) -> Slot:
        """The slot of this pair (a new one the first time)."""
        key = (cluster, client, server)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = Slot(cluster, client, server)
        return slot

    def seen(
        self,
        slot: Slot,
        ts: float,
        port: int | None,
        source: EdgeSource,
        now: float,
        count: int = 1,
        *,
        udp: bool = False,
    ) -> None:
        """``count`` sightings of ``slot``'s pair at ``ts`` (``now`` is processing time);
        ``port`` is a UDP port if ``udp``, else a TCP port."""
        if not slot.admitted and not self._admit(slot, ts, now, count):
            return
        if slot.count == 0:
            slot.first = slot.last = ts
            slot.since = slot.active_at = now
            self._waiting.append((now, slot))
        elif ts < slot.first:
            slot.first = ts
        elif ts > slot.last:
            slot.last = ts
        slot.count += count
        if port is not None and port not in (slot.known_udp_ports if udp else slot.known_ports):
            (slot.udp_ports if udp else slot.ports).add(port)
            news = True
        else:
            news = not slot.known or self.interval <= 0
        if source not in slot.known_sources:
            slot.sources.add(source)
            news = True
        if news and not slot.urgent:
            slot.urgent = True
            self._urgent.append(slot)

    def seen_each(
        self,
        slots: tuple[Slot, ...],
        ts: float,
        port: int | None,
        source: EdgeSource,
        now: float,
        count: int = 1,
    ) -> int:
        """:meth:`seen` for each of ``slots`` (one event's edges); how many sightings that made.

        ``count`` is how many identical events the one stands for (a DNS
        answer's ``count``).

        On the hot path: a repeat that tells the owner nothing new only
        counts, inline; anything else takes :meth:`seen`. ``port`` is a TCP
        port (UDP sightings take :meth:`seen_udp`).
        """
        for slot in slots:
            if (
                slot.count
                and not slot.urgent
                and (port is None or port in slot.known_ports)
                and source in slot.known_sources
            ):
                slot.count += count
                if ts > slot.last:
                    slot.last = ts
                elif ts < slot.first:
                    slot.first = ts
            else:
                self.seen(slot, ts, port, source, now, count)
        return len(slots)

    def seen_udp(
        self, slots: tuple[Slot, ...], ts: float, port: int, source: EdgeSource, now: float
    ) -> int:
        """:meth:`seen` for each of ``slots``, called over UDP on ``port``."""
        for slot in slots:
            self.seen(slot, ts, port, source, now, udp=True)
        return len(slots)

    def add_health(self, slots: tuple[Slot, ...], health: FlowHealth, now: float) -> None:
        """How the connections of ``slots``' pairs went; held like a repeat, and sent with
        the pair's next sighting or alone (a sighting with ``count`` 0)."""
        for slot in slots:
            if not slot.holding:
                slot.since = slot.active_at = now
                self._waiting.append((now, slot))
            slot.health = health if slot.health is None else slot.health.plus(health)

    def _admit(self, slot: Slot, ts: float, now: float, count: int) -> bool:
        """Whether ``slot``'s pair is within its client's cap; counted and noted if not."""
        cap = self.max_edges_per_client
        if not cap:
            slot.admitted = True
            return True
        key = (slot.cluster, slot.client)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = Client()
        servers = client.servers
        if slot.server not in servers and len(servers) >= cap:
            self._age_out(key, client, now)
        if slot.server in servers or len(servers) < cap:
            servers[slot.server] = now
            slot.admitted = True
            return True
        self._dropped += count
        if now - client.reported_at >= REPORT_EVERY:
            client.reported_at = now
            self._capped.append(
                EdgeSighting(
                    edge_id=slot.edge_id,
                    cluster=slot.cluster,
                    client=slot.client,
                    server=slot.server,
                    first_seen=ts,
                    last_seen=ts,
                    count=count,
                )
            )
        return False

    def _age_out(
        self, key: tuple[str, Endpoint], client: Client, now: float, *, force: bool = False
    ) -> None:
        """Forget the servers the client has not reached within ``edge_ttl`` (at most once
        a minute unless forced: a capped client keeps knocking)."""
        if not force and now - client.checked_at < 60.0:
            return
        client.checked_at = now
        horizon, cluster, endpoint = now - self.edge_ttl, key[0], key[1]
        for server, admitted in list(client.servers.items()):
            slot = self._slots.get((cluster, endpoint, server))
            if slot is not None and slot.active_at > admitted:
                client.servers[server] = admitted = slot.active_at
            if admitted < horizon:
                del client.servers[server]

    def take_capped(self) -> tuple[int, list[EdgeSighting]]:
        """Sightings dropped by the per-client cap since the last call, and one sighting
        per client to report (at most once per client and ``REPORT_EVERY``)."""
        dropped, capped = self._dropped, self._capped
        self._dropped, self._capped = 0, []
        return dropped, capped

    def urgent(self) -> list[EdgeSighting]:
        """The sightings that must go out now."""
        out = [slot.sighting() for slot in self._urgent if slot.count]
        self._urgent.clear()
        return out

    def due(self, now: float) -> list[EdgeSighting]:
        """Held repeats that have waited ``interval``, to go out now."""
        out: list[EdgeSighting] = []
        waiting = self._waiting
        while waiting and now - waiting[0][0] >= self.interval:
            since, slot = waiting.popleft()
            if slot.holding and slot.since == since and not slot.urgent:
                out.append(slot.sighting())
        if now - self._swept_at >= self.forget_after / 4:
            self._sweep(now)
        return out

    def drain(self) -> list[EdgeSighting]:
        """Everything held, to go out before the worker stops."""
        out = [slot.sighting() for slot in self._holding()]
        self._urgent.clear()
        self._waiting.clear()
        return out

    @property
    def held(self) -> int:
        """Slots with sightings not forwarded yet."""
        return sum(1 for _ in self._holding())

    def _holding(self) -> Iterator[Slot]:
        """The slots with sightings held (each once: the entry of its current hold)."""
        return (slot for since, slot in self._waiting if slot.holding and slot.since == since)

    def __len__(self) -> int:
        return len(self._slots)

    def _sweep(self, now: float) -> None:
        """Forget idle pairs, then the least recently active beyond ``max_edges``."""
        self._swept_at = now
        for client_key, client in list(self._clients.items()):
            self._age_out(client_key, client, now, force=True)
            if not client.servers:
                del self._clients[client_key]
        horizon = now - self.forget_after
        idle = [key for key, slot in self._slots.items() if slot.active_at < horizon]
        excess = len(self._slots) - len(idle) - self.max_edges
        if excess > 0:
            busy = [k for k, s in self._slots.items() if s.active_at >= horizon]
            busy.sort(key=lambda k: self._slots[k].active_at)
            idle += busy[:excess]
        for key in idle:
            slot = self._slots[key]
            if not slot.holding:  # one with sightings held goes out first; forgotten later
                del self._slots[key]
                slot.forget()
