"""From connection-tracking events to the calls a node's conntrack saw: TCP answered, UDP sent.

The kernel's connection tracking sees every connection routed through a node,
and after destination NAT it names both what a client dialled (a Service's
address) and who answered (the backend pod). :class:`FlowTracker` is the pure
heart of conntrack capture: netlink datagrams of ``ctnetlink`` events (with
the time they were read) go in, ``SocketObservation`` records
(``origin="conntrack"``) come out at each flush. It promises:

- TCP counts, and UDP when the tracker is told to follow it (``udp``): UDP
  events otherwise are counted (``udp_not_followed``) and skipped, as are
  other protocols (``other_protocol``) and flows to or from a loopback
  address (``loopback``);
- a UDP flow to port 53 (as dialled, or as answered) is a DNS lookup:
  counted (``dns_lookup``) and not reported. The DNS capture reports what
  it asked and got, and every workload needs DNS; reporting them would add
  an edge from every pod to the DNS service;
- a UDP flow becomes one observation at its first event, answered or not:
  one-way senders (statsd, syslog, most telemetry) never get an answer and
  still call. The observation says ``transport: udp``;
- a TCP flow (its conntrack id and original tuple) becomes one observation the
  first time one of its events carries ``IPS_SEEN_REPLY``: the other side
  answered. An answered flow first heard of at its DESTROY is never a record
  (``ended_unseen``): that comes when its TIME_WAIT ends, up to two minutes
  after the call, when its addresses may name other pods;
- every record carries the ``health`` of its flows in the window: ``opened``
  (answered, or a UDP flow's first event), ``closed`` (a TCP flow that reached
  TIME_WAIT or CLOSE, or any flow's DESTROY, whichever comes first),
  ``resets`` (closed in state CLOSE: a reset), ``failed`` (a flow seen alive
  and destroyed unanswered: refused, or its SYN timed out) and the bytes
  each way that a DESTROY carries when the node counts them. A record that
  ``opened`` nothing is health only: the stream adds it to an edge that
  exists, and it makes none. Its ``first_seen`` is its earliest flow's start,
  when the flow's addresses were surely its ends';
- the record names the side that opened the flow (``local_*``, the original
  source), the side that answered (``remote_*``, the reply source, i.e. the
  backend after DNAT) and, when NAT changed the destination, what was dialled
  (``dialled_ip`` when the address changed, ``dialled_port`` when the address
  or the port did);
- calls of one flush window fold: one record per (transport, client address,
  backend address and port, dialled address and port), with the first client port
  and the earliest ``first_seen`` (when this tracker first saw the flow);
- :meth:`FlowTracker.rewrite` gives a socket-table observation of a client
  whose connection is a live NAT'd flow the backend it reached;
- every event is accounted for in the ``conntrack`` stage with
  ``seen == emitted + sum(dropped)``; a loss (the kernel's queue overflowed,
  a flow forgotten to stay within bounds) counts as seen and dropped;
- bad input (a datagram cut short or undecodable, a message without tuples, an
  odd address family) is counted with a reason and logged once per reason,
  never raised;
- memory is bounded: flows alive (at most ``max_flows``, oldest forgotten
  first), NAT'd flows alive (at most ``max_nat``) and the records of one
  window. A flow leaves at its DESTROY event; one forgotten early may be
  reported again if it is seen answered again.

No clock and no I/O: the caller passes read times and decides when to flush;
:mod:`capture.ctnetlink` decodes the datagrams.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import msgspec

from callmap.counters import StageCounters
from callmap.wire import FlowHealth, SocketObservation
from capture.ctevent import BAD_INPUT, TCP_CLOSE, TCP_TIME_WAIT, Endpoints, FlowEvent
from capture.ctnetlink import parse_datagram

log = logging.getLogger(__name__)

STAGE = "conntrack"
ORIGIN = "conntrack"

DROP_LOOPBACK = "loopback"
DROP_AWAITING_ANSWER = "awaiting_answer"
"""An event of a flow not answered yet (its NEW event, the SYN's)."""
DROP_ANSWERED_BEFORE = "answered_before"
"""An event of a flow already reported (its later state changes, its DESTROY)."""
DROP_UNANSWERED = "unanswered"
"""The DESTROY of a flow never answered: a failed connect."""
DROP_ENDED_UNSEEN = "ended_unseen"
"""The DESTROY of an answered flow this tracker never saw alive (older than the agent,
or its events lost): it ended up to two minutes ago (TIME_WAIT), when its addresses
may already belong to other pods, so it is not reported. A socket scan saw it if it
lived long enough."""
DROP_FOLDED = "folded"
DROP_UDP_NOT_FOLLOWED = "udp_not_followed"
"""A UDP event while the tracker follows TCP only."""
DROP_DNS_LOOKUP = "dns_lookup"
"""A UDP flow to port 53: the DNS capture reports it (the answer), not conntrack."""
DNS_PORT = 53
DROP_FLOW_EVICTED = "flow_evicted"
DROP_NAT_EVICTED = "nat_evicted"
DROP_QUEUE_OVERFLOW = "event_queue_overflow"

_ENDED = frozenset({TCP_TIME_WAIT, TCP_CLOSE})

DEFAULT_MAX_FLOWS = 262_144
"""Flows remembered between their first event and their DESTROY."""
DEFAULT_MAX_NAT = 262_144
"""Live NAT'd flows remembered for :meth:`FlowTracker.rewrite`."""


_FlowKey = tuple[int | None, str, str, int, str, int]
_FoldKey = tuple[str, str, str, int, str | None, int | None]


@lru_cache(maxsize=16_384)
def _is_loopback(ip: str) -> bool:
    return ipaddress.ip_address(ip).is_loopback


def _ended(event: FlowEvent) -> FlowHealth:
    """A flow's end: a reset if the kernel left it in CLOSE."""
    return _RESET if event.tcp_state == TCP_CLOSE else _CLOSED


def dialled(
    destination: tuple[str, int], answerer: tuple[str, int]
) -> tuple[str | None, int | None]:
    """What a client dialled (``destination``) when NAT sent it to ``answerer``
    (the address or the port changed); nothing when NAT did not."""
    if destination == answerer:
        return None, None
    return destination


@dataclass(slots=True)
class _Flow:
    first_seen: float
    answered: bool = False
    ended: bool = False
    """Its end (TIME_WAIT, a reset, or its DESTROY) has been counted."""


_NOTHING = FlowHealth()


@dataclass(slots=True)
class _Folded:
    """One record of the window: the first flow's client port, the earliest start, and
    how the window's flows of this call went."""

    local_port: int
    first_seen: float
    health: FlowHealth = _NOTHING

    def add(self, health: FlowHealth) -> None:
        self.health = self.health.plus(health)


_OPENED = FlowHealth(opened=1)
_FAILED = FlowHealth(failed=1)
_CLOSED = FlowHealth(closed=1)
_RESET = FlowHealth(closed=1, resets=1)


class FlowTracker:
    """Accumulates one flush window of calls; see the module docstring."""

    def __init__(
        self,
        *,
        cluster: str,
        node: str,
        netns: int,
        counters: StageCounters,
        max_flows: int = DEFAULT_MAX_FLOWS,
        max_nat: int = DEFAULT_MAX_NAT,
        udp: bool = False,
    ) -> None:
        self.cluster = cluster
        self.udp = udp
        """Whether UDP flows are followed too."""
        self.node = node
        self.netns = netns
        """The id of the network namespace whose conntrack this is (its ``net/tcp`` inode)."""
        self.max_flows = max_flows
        self.max_nat = max_nat
        self._stage = counters
        self._flows: dict[_FlowKey, _Flow] = {}  # insertion order: oldest first
        self._nat: dict[Endpoints, tuple[str, int]] = {}
        self._window: dict[_FoldKey, _Folded] = {}
        self._logged: set[str] = set()

    @property
    def flows(self) -> int:
        """Flows remembered now (seen, not yet destroyed)."""
        return len(self._flows)

    @property
    def nat_flows(self) -> int:
        """Live NAT'd flows remembered now."""
        return len(self._nat)

    def count_lost(self, reason: str, count: int = 1) -> None:
        """Events that never reached this tracker (e.g. the kernel's queue overflowed)."""
        self._stage.seen += count
        self._stage.drop(reason, count)

    def add_datagram(self, data: bytes, now: float) -> None:
        """Take one netlink datagram read at ``now``."""
        for item in parse_datagram(data):
            if isinstance(item, str):
                self._skip(item)
            else:
                self.add(item, now)

    def _skip(self, reason: str) -> None:
        self._stage.seen += 1
        self._stage.drop(reason)
        if reason in BAD_INPUT and reason not in self._logged:
            self._logged.add(reason)
            log.warning("skipped a conntrack message (%s); further ones are only counted", reason)

    def add(self, event: FlowEvent, now: float) -> None:
        """Take one event of a TCP or UDP flow, read at ``now``."""
        stage = self._stage
        stage.seen += 1
        orig, reply = event.orig, event.reply
        if event.transport == "udp":
            if not self.udp:
                stage.drop(DROP_UDP_NOT_FOLLOWED)
                return
            if orig[3] == DNS_PORT or reply[1] == DNS_PORT:
                stage.drop(DROP_DNS_LOOKUP)
                return
        if _is_loopback(orig[0]) or _is_loopback(orig[2]):
            stage.drop(DROP_LOOPBACK)
            return
        key = (event.ct_id, event.transport, *orig)
        flow = self._flows.get(key)
        if event.kind == "destroy":
            self._destroyed(key, event, flow)
            return
        if flow is None:
            flow = self._flows[key] = _Flow(now)
            if len(self._flows) > self.max_flows:
                del self._flows[next(iter(self._flows))]
                self.count_lost(DROP_FLOW_EVICTED)
        if flow.answered:
            if event.tcp_state in _ENDED and not flow.ended:
                flow.ended = True  # closed in order, or reset: counted now, not at DESTROY
                self._entry(event, flow.first_seen).add(_ended(event))
                return
            stage.drop(DROP_ANSWERED_BEFORE)
            return
        if event.transport == "udp":  # a call when first seen, answered or not
            flow.answered = True
            self._entry(event, flow.first_seen).add(_OPENED)
            return
        if not event.answered:
            stage.drop(DROP_AWAITING_ANSWER)
            return
        flow.answered = True
        if event.natted:
            self._nat[orig] = reply[0], reply[1]
            if len(self._nat) > self.max_nat:
                del self._nat[next(iter(self._nat))]
                self.count_lost(DROP_NAT_EVICTED)
        folded = self._entry(event, flow.first_seen)
        folded.add(_OPENED)
        if event.tcp_state in _ENDED:  # answered and over between two events
            flow.ended = True
            folded.add(_ended(event))

    def _destroyed(self, key: _FlowKey, event: FlowEvent, flow: _Flow | None) -> None:
        """A flow's DESTROY: its bytes and end if it was a call, a failed connect if
        it never was one."""
        self._flows.pop(key, None)
        if event.transport == "tcp":  # only TCP flows are remembered for rewrite
            self._nat.pop(event.orig, None)
        if flow is None:
            # Never seen alive (older than the agent, or its events lost); a UDP
            # flow's DESTROY comes 30 s or more after it.
            self._stage.drop(
                DROP_ENDED_UNSEEN if event.answered or event.transport == "udp" else DROP_UNANSWERED
            )
            return
        if not flow.answered and not event.answered:  # refused, or never answered
            self._entry(event, flow.first_seen).add(_FAILED)
            return
        folded = self._entry(event, flow.first_seen)
        if not flow.answered:  # seen alive, its answer lost
            folded.add(_OPENED)
        if not flow.ended:
            folded.add(_ended(event))
        if event.bytes is not None:
            folded.add(FlowHealth(bytes_sent=event.bytes[0], bytes_received=event.bytes[1]))

    def _entry(self, event: FlowEvent, first_seen: float) -> _Folded:
        """The window's record of ``event``'s call; an event that joins one already
        there counts as ``folded``, the first is ``emitted`` at the flush."""
        orig, reply = event.orig, event.reply
        answerer = (reply[0], reply[1])
        key = (event.transport, orig[0], *answerer, *dialled((orig[2], orig[3]), answerer))
        folded = self._window.get(key)
        if folded is None:
            folded = self._window[key] = _Folded(orig[1], first_seen)
            return folded
        self._stage.drop(DROP_FOLDED)
        folded.first_seen = min(folded.first_seen, first_seen)
        return folded

    def flush(self, now: float) -> list[SocketObservation]:
        """The records of the window that ends now; starts a new window."""
        window, self._window = self._window, {}
        self._stage.emitted += len(window)
        return [
            SocketObservation(
                cluster=self.cluster,
                node=self.node,
                ts=now,
                netns=self.netns,
                pod_uid=None,
                local_ip=local_ip,
                local_port=folded.local_port,
                remote_ip=remote_ip,
                remote_port=remote_port,
                role="client",
                first_seen=folded.first_seen,
                origin=ORIGIN,
                dialled_ip=dialled_ip,
                dialled_port=dialled_port,
                transport=transport,  # type: ignore[arg-type]
                health=folded.health,
            )
            for (
                transport,
                local_ip,
                remote_ip,
                remote_port,
                dialled_ip,
                dialled_port,
            ), folded in sorted(window.items(), key=lambda item: item[1].first_seen)
        ]

    def rewrite(self, observations: Iterable[SocketObservation]) -> list[SocketObservation]:
        """``observations`` with each socket-table client whose connection is a live
        NAT'd flow pointed at the backend it reached, what it dialled kept in
        ``dialled_*``; the others as they are."""
        nat = self._nat
        rewritten: list[SocketObservation] = []
        for seen in observations:
            backend = None
            if seen.origin == "proc" and seen.role == "client" and seen.dialled_port is None:
                backend = nat.get(
                    (seen.local_ip, seen.local_port, seen.remote_ip, seen.remote_port)
                )
            if backend is None:
                rewritten.append(seen)
                continue
            dialled_ip, dialled_port = dialled((seen.remote_ip, seen.remote_port), backend)
            rewritten.append(
                msgspec.structs.replace(
                    seen,
                    remote_ip=backend[0],
                    remote_port=backend[1],
                    dialled_ip=dialled_ip,
                    dialled_port=dialled_port,
                )
            )
        return rewritten
