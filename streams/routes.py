"""Resolutions worth remembering: the edges one client reaches by one name or address. Pure.

Resolving an event is the same work each time the same client asks the same
name or opens the same connection again. :class:`Routes` remembers the result
as a :class:`Route` (the combiner slots of the edges it proves), found again
by exactly what the result depends on:

- a DNS answer: the holding of ``client_ip`` at the answer's own time, and
  the name; routes by name are dropped whenever a service changes, and a
  headless pod name's route also when a pod changes;
- a socket: the local pod (or the holding of the local IP), the holding of
  the remote IP at the connection's time, and the side (and the port, when
  the remote is a node: a node port is a service's);
- a service whose workloads changed lately has several versions: a route
  through it holds only for events in the version it was made from.

Holdings compare by identity and every identity update makes new ones, so a
route keyed by holdings never outlives the identities it was made from, and
time-versioning is kept: each event still looks its IPs up at its own time.

Whatever depends on more is resolved every time and not remembered: ``*.pod``
names (an IP at the event's time), addresses named by an earlier DNS answer,
raw ``ip`` and ``service`` stand-ins after the grace period, late events, and
sockets whose pod UID the store does not know yet.

Routes whose holdings were replaced are pruned whenever the routes have
doubled since the last pruning, so a week of churn keeps memory flat.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from callmap.wire import DnsAnswer, FlowHealth, PodIdentity, SocketObservation
from callmap.wire.records import EdgeSource
from streams.combine import Combiner, Slot
from streams.dnsnames import HeadlessPodName, PodIpName, classify
from streams.identity import Holding, IdentityStore, WorkloadsVersion
from streams.repeats import AVAILABLE, Miss, Repeats, Scan
from streams.resolve import Late, Resolver, Sight

DEFAULT_MAX_ROUTES = 100_000
MIN_PRUNE = 1024
"""Routes below which pruning is not worth a pass."""
_DNS: EdgeSource = "dns"
_SERVER_SIDE: EdgeSource = "socket-server"
_CLIENT_SIDE: EdgeSource = "socket-client"
_SIDE = {"client": 0, "server": 1}
DROP_OTHER_NODE = "dns_seen_on_other_node"
"""A DNS answer captured on a node other than its client's: the client's node counts it."""
DROP_HEALTH_OTHER_NODE = "health_seen_on_other_node"
"""Health of a flow tracked on a node other than its client's (a flow between two nodes is
tracked on both): the client's node counts it."""


class Route:
    """The edges one resolution proves, and what a repeat must still do."""

    __slots__ = (
        "client_node",
        "drops",
        "pins",
        "plain",
        "pods_version",
        "remember",
        "slots",
        "versions",
    )

    def __init__(
        self,
        slots: tuple[Slot, ...],
        *,
        remember: tuple[str, ...] = (),
        drops: tuple[tuple[str, int], ...] = (),
        pods_version: int | None = None,
        pins: tuple[object, ...] = (),
        versions: tuple[tuple[str, WorkloadsVersion], ...] = (),
        client_node: str | None = None,
    ) -> None:
        self.slots = slots
        self.remember = remember
        """External names whose answers tell the client their addresses."""
        self.drops = drops
        """Sightings dropped (by reason) each time, e.g. for an excluded namespace."""
        self.pods_version = pods_version
        """The pod store version it was made at, when it depends on pods by name."""
        self.pins = pins
        """The objects whose ids key it, kept alive so that no id is reused."""
        self.versions = versions
        """The versions of services' workloads it was made from, when they have several."""
        self.client_node = client_node
        """The node of the client, when known: only its capture counts a DNS answer, or the
        health of a connection."""
        self.plain = not (remember or drops or pods_version is not None or versions)
        """Whether a repeat only counts sightings."""

    def holds(self, store: IdentityStore, ts: float) -> bool:
        """Whether an event at ``ts`` resolves as this route did."""
        if self.pods_version is not None and self.pods_version != store.pods_version:
            return False
        return all(store.workloads_at(key, ts) is v for key, v in self.versions)


class Routes:
    """The routes of one cluster's events; see the module docstring."""

    def __init__(
        self,
        cluster: str,
        resolver: Resolver,
        combiner: Combiner,
        max_routes: int = DEFAULT_MAX_ROUTES,
        *,
        repeats: bool = True,
    ) -> None:
        """``repeats``: keep the records known by their bytes (when the C table is built)."""
        self._cluster = cluster
        self._resolver = resolver
        self._store = resolver.store
        self._combiner = combiner
        self._max = max_routes
        self._dns: dict[tuple[Holding, str], Route] = {}
        self._sockets: dict[tuple[int, ...], Route] = {}
        self._services_version = self._store.services_version
        self._pruned_at = MIN_PRUNE
        """Routes after the last pruning (at least :data:`MIN_PRUNE`): prune again at twice."""
        self.dns_repeats: Repeats | None = None
        """The DNS answers known by their bytes (:mod:`streams.repeats`); None: not kept."""
        self.socket_repeats: Repeats | None = None
        if repeats and AVAILABLE:
            self.dns_repeats = Repeats(max_routes, counted=True)
            self.socket_repeats = Repeats(max_routes, counted=False)
            self._store.changes = set()

    def begin(self) -> None:
        """Start a batch: forget the routes by name if a service changed since the last,
        and the repeats that depended on identities updated since."""
        if self._store.services_version != self._services_version:
            self._dns.clear()
            self._services_version = self._store.services_version
            if self.dns_repeats is not None:
                self.dns_repeats.clear()
        changes = self._store.changes
        if changes and self.dns_repeats is not None and self.socket_repeats is not None:
            self.dns_repeats.forget(changes)
            self.socket_repeats.forget(changes)
            changes.clear()

    def answers(
        self,
        answers: Sequence[DnsAnswer],
        now: float,
        final: bool,
        late: list[DnsAnswer],
        scan: Scan | None = None,
    ) -> int:
        """Sight every answer's edges in the combiner; how many sightings that made.

        Answers whose identities are missing go to ``late`` (unless ``final``).
        This is the stream's hot loop: the common case (an IP with one holder,
        a plain route) is spelled out inline, and everything else takes the
        general path (:meth:`dns`); the combiner does the same for repeats
        (:meth:`Combiner.seen_each`). ``scan``: what :attr:`dns_repeats` found
        in the answers' message; its hits are sighted as they are, and its
        misses are learnt where the inline path applies.
        """
        by_ip, by_name, seen = self._store.by_ip, self._dns, self._combiner.seen_each
        hits = scan.hits if scan is not None else None
        sightings = 0
        for index, answer in enumerate(answers):
            if hits is not None and (hit := hits[index]) is not None:
                (slots, port, source), ts, count = hit
                sightings += seen(slots, ts, port, source, now, count)
                continue
            ts, route = answer.ts, None
            holdings = by_ip.get(answer.client_ip)
            if holdings is not None and len(holdings) == 1:
                holding = holdings[0]
                if holding.start <= ts < holding.end:
                    route = by_name.get((holding, answer.qname))
            if route is None or not route.plain:
                try:
                    route = self.dns(answer, final)
                except Late:
                    late.append(answer)
                    continue
            if route.client_node is not None and route.client_node != answer.node:
                self._resolver.counters.drop(DROP_OTHER_NODE, answer.count)
                continue
            sightings += seen(route.slots, ts, None, _DNS, now, answer.count)
        if scan is not None and self.dns_repeats is not None:
            self._learn_answers(answers, scan.misses, self.dns_repeats)
        return sightings

    def _learn_answers(
        self, answers: Sequence[DnsAnswer], misses: Sequence[Miss], repeats: Repeats
    ) -> None:
        """Learn the missed answers the inline path of :meth:`answers` takes."""
        by_ip, by_name = self._store.by_ip, self._dns
        for miss in misses:
            answer = answers[miss.index]
            if miss.key is None or miss.ts != answer.ts or miss.count != answer.count:
                continue
            holdings = by_ip.get(answer.client_ip)
            if holdings is None or len(holdings) != 1:
                continue
            holding = holdings[0]
            if not holding.start <= answer.ts < holding.end:
                continue
            route = by_name.get((holding, answer.qname))
            if route is None or not route.plain:
                continue
            if route.client_node is not None and route.client_node != answer.node:
                continue
            value = (route.slots, None, _DNS)
            repeats.learn(miss.key, value, holding.start, holding.end, (answer.client_ip,))

    def connections(
        self,
        observations: Sequence[SocketObservation],
        now: float,
        final: bool,
        late: list[SocketObservation],
        scan: Scan | None = None,
    ) -> int:
        """Sight every observation's edges in the combiner; how many sightings that made.

        The other hot loop, like :meth:`answers`: inline for a local pod that
        capture named by UID, a remote IP with one holder and a plain route;
        :meth:`socket` for everything else. ``scan`` as for :meth:`answers`.
        """
        pods, by_ip, by_socket = self._store.pods, self._store.by_ip, self._sockets
        seen, sightings = self._combiner.seen_each, 0
        sidecar = self._resolver.sidecar_inbound_ports
        hits = scan.hits if scan is not None else None
        for index, obs in enumerate(observations):
            if hits is not None and (hit := hits[index]) is not None:
                (slots, port, source), ts, count = hit
                sightings += seen(slots, ts, port, source, now, count)
                continue
            route = None
            local = pods.get(obs.pod_uid) if obs.pod_uid is not None else None
            holdings = by_ip.get(obs.remote_ip)
            if (
                local is not None
                and holdings is not None
                and len(holdings) == 1
                and obs.dialled_ip is None
            ):
                remote = holdings[0]
                if remote.start <= obs.first_seen < remote.end and remote.kind != "node":
                    route = by_socket.get((id(local), id(remote), _SIDE[obs.role]))
            if route is None or not route.plain:
                try:
                    route = self.socket(obs, final)
                except Late:
                    late.append(obs)
                    continue
            if obs.health is not None:
                self._health(route, obs.node, obs.health, now)
                if not obs.health.opened and obs.origin == "conntrack":
                    continue  # health alone (failed connects, ends): no sighting of a call
            if obs.transport == "udp":
                sightings += self._udp(route, obs, now)
            elif obs.role == "server":
                port = None if obs.local_port in sidecar else obs.local_port
                sightings += seen(route.slots, obs.ts, port, _SERVER_SIDE, now)
            else:
                sightings += seen(route.slots, obs.ts, obs.remote_port, _CLIENT_SIDE, now)
        if scan is not None and self.socket_repeats is not None:
            self._learn_connections(observations, scan.misses, self.socket_repeats)
        return sightings

    def _learn_connections(
        self, observations: Sequence[SocketObservation], misses: Sequence[Miss], repeats: Repeats
    ) -> None:
        """Learn the missed observations the inline path of :meth:`connections` takes (TCP,
        no health); ``first_seen`` is part of their keys."""
        pods, by_ip, by_socket = self._store.pods, self._store.by_ip, self._sockets
        sidecar = self._resolver.sidecar_inbound_ports
        for miss in misses:
            obs = observations[miss.index]
            if miss.key is None or miss.ts != obs.ts or miss.count != 1:
                continue
            if (
                obs.pod_uid is None
                or obs.dialled_ip is not None
                or obs.health is not None
                or obs.transport != "tcp"
            ):
                continue
            local = pods.get(obs.pod_uid)
            holdings = by_ip.get(obs.remote_ip)
            if local is None or holdings is None or len(holdings) != 1:
                continue
            remote = holdings[0]
            if not remote.start <= obs.first_seen < remote.end or remote.kind == "node":
                continue
            route = by_socket.get((id(local), id(remote), _SIDE[obs.role]))
            if route is None or not route.plain:
                continue
            if obs.role == "server":
                port = None if obs.local_port in sidecar else obs.local_port
                value = (route.slots, port, _SERVER_SIDE)
            else:
                value = (route.slots, obs.remote_port, _CLIENT_SIDE)
            repeats.learn(miss.key, value, -math.inf, math.inf, (obs.remote_ip, obs.pod_uid))

    def _health(self, route: Route, node: str, health: FlowHealth, now: float) -> None:
        """Add a conntrack observation's health to its edges, counted on its client's node."""
        if route.client_node is not None and route.client_node != node:
            self._resolver.counters.drop(DROP_HEALTH_OTHER_NODE)
            return
        self._combiner.add_health(route.slots, health, now)

    def _udp(self, route: Route, obs: SocketObservation, now: float) -> int:
        """Sight a UDP observation's edges: its server's port is a UDP port."""
        if obs.role == "server":
            port, source = obs.local_port, _SERVER_SIDE
        else:
            port, source = obs.remote_port, _CLIENT_SIDE
        return self._combiner.seen_udp(route.slots, obs.ts, port, source, now)

    def dns(self, answer: DnsAnswer, final: bool) -> Route:
        """The route of one DNS answer; raises :class:`~streams.resolve.Late` unless ``final``."""
        store = self._store
        holding = store.holder(answer.client_ip, answer.ts)
        if holding is not None:
            route = self._dns.get((holding, answer.qname))
            if route is not None:
                if route.plain:
                    return route
                if route.holds(store, answer.ts):
                    for name in route.remember:
                        self._resolver.remember(holding, answer, name)
                    if route.drops:
                        self._drop(route)
                    return route
        fallbacks, dropped = self._resolver.fallbacks, Counter(self._resolver.counters.dropped)
        self._resolver.consulted.clear()
        route = self._route(self._resolver.dns(answer, final=final), dropped)
        route.client_node = self._node_of(holding)
        if (
            holding is None
            or self._resolver.fallbacks != fallbacks
            or _by_address(answer, self._resolver.domain)
            or len(self._dns) >= self._max
        ):
            return route
        external = {s.server.dns_name for s in route.slots if s.server.type == "external"}
        route = Route(
            route.slots,
            remember=tuple(sorted(n for n in external if n)),
            drops=route.drops,
            pods_version=store.pods_version
            if _by_pod_name(answer, self._resolver.domain)
            else None,
            versions=tuple(self._resolver.consulted),
            client_node=route.client_node,
        )
        self._dns[(holding, answer.qname)] = route
        self._prune_if_grown()
        return route

    def socket(self, obs: SocketObservation, final: bool) -> Route:
        """The route of one socket observation; raises ``Late`` unless ``final``."""
        store = self._store
        local: object | None
        if obs.pod_uid is not None:  # an unknown UID is waited for, never stood in for
            local = store.pods.get(obs.pod_uid)
        else:
            local = store.holder(obs.local_ip, obs.first_seen)
        remote = store.holder(obs.remote_ip, obs.first_seen)
        pins: tuple[object, ...] = ()
        key: tuple[int, ...] = (id(local), id(remote), _SIDE[obs.role])
        if remote is not None and remote.kind == "node":
            key = (*key, obs.remote_port)
        if obs.dialled_ip is not None:  # through NAT: the dialled service decides too
            dialled = store.holder(obs.dialled_ip, obs.first_seen)
            if dialled is None:
                remote = None  # resolved every time, never remembered
            else:
                pins = (*pins, dialled)
                key = (*key, -1, id(dialled), obs.dialled_port or 0)
        if local is not None and remote is not None:
            route = self._sockets.get(key)
            if route is not None and (route.plain or route.holds(store, obs.first_seen)):
                if route.drops:
                    self._drop(route)
                return route
        fallbacks, dropped = self._resolver.fallbacks, Counter(self._resolver.counters.dropped)
        self._resolver.consulted.clear()
        route = self._route(self._resolver.socket(obs, final=final), dropped)
        route.client_node = self._node_of_local(local, obs.role)
        if (
            local is None
            or remote is None
            or self._resolver.fallbacks != fallbacks
            or len(self._sockets) >= self._max
        ):
            return route
        route = Route(
            route.slots,
            drops=route.drops,
            pins=(local, remote, *pins),
            versions=tuple(self._resolver.consulted),
            client_node=route.client_node,
        )
        self._sockets[key] = route
        self._prune_if_grown()
        return route

    def __len__(self) -> int:
        return len(self._dns) + len(self._sockets)

    def _prune_if_grown(self) -> None:
        if len(self) >= 2 * self._pruned_at:
            self.prune()

    def prune(self) -> None:
        """Forget the routes made from holdings or pods the store has replaced since."""
        current = {id(h) for holdings in self._store.by_ip.values() for h in holdings}
        pods = self._store.pods
        self._dns = {k: r for k, r in self._dns.items() if id(k[0]) in current}
        self._sockets = {
            k: r
            for k, r in self._sockets.items()
            if all(_current(pin, current, pods) for pin in r.pins)
        }
        self._pruned_at = max(MIN_PRUNE, len(self))
        # The repeats of the routes pruned went when their identities changed (begin).

    def _route(self, sights: list[Sight], dropped_before: Counter[str]) -> Route:
        dropped = self._resolver.counters.dropped
        drops = tuple(
            (reason, count - dropped_before[reason])
            for reason, count in dropped.items()
            if count != dropped_before[reason]
        )
        slots = tuple(self._combiner.slot(self._cluster, s.client, s.server) for s in sights)
        return Route(slots, drops=drops)

    def _node_of(self, holding: Holding | None) -> str | None:
        """The node a client holding is on, when it is a pod or a node."""
        if holding is None or holding.kind == "service":
            return None
        if holding.kind == "node":
            return holding.key
        return self._store.pods[holding.key].node

    def _node_of_local(self, local: object | None, role: str) -> str | None:
        """The node of a socket's client when it is the local side (a pod or a node)."""
        if role != "client":
            return None
        if isinstance(local, PodIdentity):
            return local.node
        return self._node_of(local) if isinstance(local, Holding) else None

    def _drop(self, route: Route) -> None:
        for reason, count in route.drops:
            self._resolver.counters.drop(reason, count)


def _current(pin: object, holdings: set[int], pods: dict[str, PodIdentity]) -> bool:
    if isinstance(pin, Holding):
        return id(pin) in holdings
    return isinstance(pin, PodIdentity) and pods.get(pin.uid) is pin


def _by_address(answer: DnsAnswer, domain: str) -> bool:
    """Whether the answer names a pod by its address: resolved at each event's time."""
    for name in (answer.qname, *answer.cnames):
        kind = classify(name, domain)
        if isinstance(kind, PodIpName) or (isinstance(kind, HeadlessPodName) and kind.ip):
            return True
    return False


def _by_pod_name(answer: DnsAnswer, domain: str) -> bool:
    """Whether the answer may name a pod by its hostname: remembered while pods stay."""
    return any(
        isinstance(classify(name, domain), HeadlessPodName)
        for name in (answer.qname, *answer.cnames)
    )
