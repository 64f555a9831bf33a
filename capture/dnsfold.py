"""From captured frames to one node's DNS answers of a flush window.

:class:`DnsFolder` is the pure heart of DNS capture: frames (with their
capture time) go in, ``DnsAnswer`` records come out at each flush. It promises:

- every frame is accounted for in its stages: ``dns.frames`` (link and IP
  decoding), ``dns.tcp`` (TCP segments, reassembled by :mod:`capture.tcpstream`:
  a segment seen twice is a ``duplicate``), ``dns.parse`` (DNS messages; an
  unfinished TCP message that can never be finished is a ``tcp_partial``) and
  ``dns.fold`` (responses), each with ``seen == emitted + sum(dropped)``;
- the same response seen on several interfaces of the node (pod veth, bridge,
  uplink, or a packet socket's outgoing copy) is one response: two sightings
  with the same client address and port, transport, message id and question
  within ``dedup_seconds`` are one (and may be up to two and a half times
  that apart; the server address may differ: a DNS service's cluster IP is
  rewritten to the DNS pod's IP on the way);
- a response whose destination was rewritten on the node is one response
  too, and its client is the last destination seen: a DNS server pod's
  upstream answer comes in on the uplink addressed to the node (the pod's
  query was masqueraded) and goes on to the pod; same server address and
  port, client port, message id and question within ``dedup_seconds``;
- a DNS server is not a client: answers to an address that itself sent DNS
  responses within ``server_memory`` seconds (CoreDNS forwarding upstream, a
  node-local cache) are the server's own lookups, dropped at the flush
  (``to_dns_server``), never records; so are answers to any address of the
  capturing namespace (``local_addresses``, set by the caller) once one of
  them served DNS: a node-local cache answers pods from ``169.254.20.10``
  but looks up from the node's own address;
- identical answers (same client, server, transport, question, CNAMEs and
  addresses) within one flush window fold into one record whose ``count``
  says how many responses it stands for, whose ``ts`` is the first sighting
  and whose ``ttl`` is the smallest seen;
- a window holds at most ``max_window`` answers before it asks to be closed
  (:attr:`DnsFolder.full`; the caller flushes it then, not at its time): a
  node under a flood of answers that never fold keeps a bounded window, and
  its flushes stay small enough not to stall the capture thread (the way
  flow exporters bound their caches: a timeout or a count, whichever first);
- memory is bounded by the responses of one window plus what was seen in
  the last ``dedup_seconds`` to twice that (:class:`RecentKeys`: forgotten a
  generation at a time, turned by the capture times themselves, so a longer
  flush window does not hold more), the addresses of DNS servers seen within
  ``server_memory``, and the TCP flows :mod:`capture.tcpstream` follows. The
  copies of one response reach the node's interfaces within microseconds to
  milliseconds (one pass of the kernel's forwarding path, with at most a
  queue's wait between two copies), so a quarter of a second is ample: 28
  times the largest gap measured on the lab's nodes (8.9 ms), 5 times the
  receive ring's block timeout (50 ms), which bounds how late a copy read
  from another socket can come. A sighting is
  remembered by the 64-bit hash of its key, and the window's answers by the
  hash of theirs: at 100,000 distinct answers/s the keys and the names they
  held took 300 MB. Two different responses whose keys hash alike within
  ``dedup_seconds`` would be taken for one; at that rate the odds are about
  one in a billion per window.

No clock and no I/O: the caller passes capture times and decides when to
flush, so tests replay frames with fake times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Generic, TypeVar

import msgspec

from callmap.counters import Counters
from callmap.lists import drained
from callmap.wire import SCHEMA_VERSION, DnsAnswer
from capture.dnswire import DROP_TCP_PARTIAL, NATIVE_PARSE, DnsResponse, parse_response
from capture.frames import (
    LINKTYPE_ETHERNET,
    Segment,
    Transport,
    decode_frame,
    read_plain_dns,
)
from capture.packetring import read_block
from capture.tcpstream import DUPLICATE, TcpStreams

FRAMES, TCP, PARSE, FOLD = "dns.frames", "dns.tcp", "dns.parse", "dns.fold"
DROP_NOT_FROM_PORT_53 = "not_from_port_53"
DROP_TCP_NO_PAYLOAD = "tcp_no_payload"
DROP_DUPLICATE = "duplicate_sighting"
DROP_FOLDED = "folded"
DROP_REWRITTEN = "rewritten_destination"
DROP_TO_DNS_SERVER = "to_dns_server"

log = logging.getLogger(__name__)

_read_in_python = partial(parse_response, native=False)

DEFAULT_DEDUP_SECONDS = 0.25
DEFAULT_SERVER_MEMORY = 600.0
DEFAULT_MAX_WINDOW = 25_000
"""Answers a window holds before it asks to be flushed: about a quarter of a second at
100,000 distinct answers/s, about 11 MB of window and 6 MB of JSON."""


K = TypeVar("K")
V = TypeVar("V")


class RecentKeys(Generic[K, V]):
    """What was set within the last ``span`` seconds at least, and within ``2 * span``
    at most: two generations of a dict, the older forgotten whole once the newer is
    ``span`` old. Time is what the caller says it is (:meth:`turn`, as often as it
    likes). Forgetting costs nothing per key: rebuilding the dicts at every flush
    would take a fifth of the capture's time at 75,000 answers/s."""

    __slots__ = ("_new", "_old", "_until", "span")

    def __init__(self, span: float) -> None:
        self.span = span
        self._new: dict[K, V] = {}
        self._old: dict[K, V] = {}
        self._until: float | None = None
        """When the newer generation is ``span`` old."""

    def get(self, key: K) -> V | None:
        found = self._new.get(key)
        return found if found is not None else self._old.get(key)

    def put(self, key: K, value: V) -> V | None:
        """Set ``key`` to ``value`` and give its value before (None if it was not
        remembered): a look-up and a set in one call, as the folder's hot path needs."""
        new = self._new
        before = new.get(key)
        if before is None:
            before = self._old.get(key)
        new[key] = value
        return before

    def __len__(self) -> int:
        return len(self._new) + len(self._old)

    def turn(self, now: float) -> None:
        """The time is ``now``: start a new generation once the newer is over ``span`` old,
        forgetting the older one (both, once the newer is over twice ``span`` old)."""
        until = self._until
        if until is None:
            self._until = now + self.span
        elif now > until:
            self._old = {} if now > until + self.span else self._new
            self._new, self._until = {}, now + self.span


class FoldedAnswer(msgspec.Struct, gc=False):
    """One answer of the window, folded: when it was first seen, its smallest TTL
    and how many responses it stands for.

    Its fields are :class:`~callmap.wire.DnsAnswer`'s, in their order, so it
    encodes byte for byte as the wire record does: the agent publishes the
    window's answers as they are, with no record made for each (closing,
    sorting and encoding 100,000 distinct answers: 45 ms instead of 68 ms).
    Mutable while its window is open, as the fold counts into it. A msgspec
    Struct: the C fold makes one for every new answer, several times faster than
    a class with ``__init__``, and outside the garbage collector (it holds no
    container that could point back)."""

    v: int
    cluster: str
    node: str
    ts: float
    client_ip: str
    server_ip: str
    transport: Transport
    qname: str
    qtype: str
    answers: tuple[str, ...]
    cnames: tuple[str, ...]
    ttl: int
    count: int

    def answer(self) -> DnsAnswer:
        """The wire record it encodes as."""
        return DnsAnswer(
            v=self.v,
            cluster=self.cluster,
            node=self.node,
            ts=self.ts,
            client_ip=self.client_ip,
            server_ip=self.server_ip,
            transport=self.transport,
            qname=self.qname,
            qtype=self.qtype,  # type: ignore[arg-type]
            answers=self.answers,
            cnames=self.cnames,
            ttl=self.ttl,
            count=self.count,
        )


BlockFolder = Callable[
    [memoryview, int, int, "DnsFolder", Callable[[memoryview, float], None]],
    tuple[int, bool, int, int, int],
]
"""``(ring, start, size, folder, other)`` -> ``(frames, sound, usual, duplicates,
folded)``: ``capture/_dnsfast_fold.c``'s ``fold_block``."""


_HASH_SAMPLES = (
    ("web.shop.svc.cluster.local", ("10.1.0.7", 40000, 4660, "udp", "api.example.com", "A")),
    ("fd00::12", ("10.96.0.10", "10.1.0.7", "udp", "x", "AAAA", ("192.0.2.1", "fd00::1"), ())),
)
"""Keys as the folder makes them, to hold the C fold's hashes to ``hash()``."""


def _folding_in_c() -> BlockFolder | None:
    """``capture._dnsfast.fold_block``, told the window entry it makes, when it was
    built (importing :mod:`capture.frames` told it the segment type and the memo of
    address texts it shares) and it hashes keys as this Python does: its keys must be
    the ones :meth:`DnsFolder._add_response` makes, and it writes CPython's str and
    tuple hashes out itself. A Python that hashed otherwise gets the fold in Python,
    and a warning."""
    if not NATIVE_PARSE:
        return None
    from capture import _dnsfast

    for text, items in _HASH_SAMPLES:
        if _dnsfast.python_hashes(text, items) != (hash(text), hash(items)):
            log.warning(
                "this Python hashes strings or tuples otherwise than capture/_dnsfast_fold.c: "
                "DNS answers are folded in Python (more CPU an answer)"
            )
            return None
    _dnsfast.set_fold_type(FoldedAnswer)
    return _dnsfast.fold_block


_FOLD_BLOCK = _folding_in_c()


class DnsFolder:
    """Accumulates one flush window of DNS answers; see the module docstring."""

    def __init__(
        self,
        *,
        cluster: str,
        node: str,
        counters: Counters,
        dedup_seconds: float = DEFAULT_DEDUP_SECONDS,
        server_memory: float = DEFAULT_SERVER_MEMORY,
        max_window: int = DEFAULT_MAX_WINDOW,
        native: bool = NATIVE_PARSE,
    ) -> None:
        """``max_window``: the answers after which the window is :attr:`full`.
        ``native``: read the usual frame and response in C (the default where it was
        built; :data:`capture.frames.read_plain_dns`), else every frame and response
        in Python (:func:`capture.frames.decode_frame`,
        :func:`capture.dnswire.parse_response`)."""
        self.cluster = cluster
        self.node = node
        self._head = (SCHEMA_VERSION, cluster, node)
        """The fields every answer of this folder begins with: the C fold's new entries
        take them from here."""
        self.dedup_seconds = dedup_seconds
        self.server_memory = server_memory
        self.max_window = max_window
        self._frames = counters.stage(FRAMES)
        self._tcp = counters.stage(TCP)
        self._parse = counters.stage(PARSE)
        self._read = parse_response if native else _read_in_python
        self._read_plain = read_plain_dns if native else None
        self._fold_block = _FOLD_BLOCK if native else None
        self._streams = TcpStreams()
        self._fold = counters.stage(FOLD)
        # capture/_dnsfast_fold.c reads and writes what follows by name (and
        # RecentKeys' _new and _old): renaming one means renaming it there.
        # Sightings by the hash of (client address and port, message id,
        # transport, question).
        self._seen: RecentKeys[int, bool] = RecentKeys(dedup_seconds)
        # The window's answers by the hash of their key: client and server address,
        # transport, question, CNAMEs and addresses.
        self._window: dict[int, FoldedAnswer] = {}
        # Responses by the hash of the parts that no rewriting of their destination
        # changes: the hash of the key they were folded under.
        self._destinations: RecentKeys[int, int] = RecentKeys(dedup_seconds)
        self._turn_at = float("-inf")
        """When the two RecentKeys are next turned: every ``dedup_seconds`` / 4 of capture
        time, so that their generations are at most that late."""
        self._servers: dict[str, float] = {}
        self.local_addresses: frozenset[str] = frozenset()
        """The capturing namespace's own addresses, loopback left out."""

    @property
    def full(self) -> bool:
        """The window holds ``max_window`` answers: flush it now, not at its time."""
        return len(self._window) >= self.max_window

    def count_frames_lost(self, reason: str, count: int) -> None:
        """Frames that never reached this folder (e.g. dropped by the kernel)."""
        self._frames.seen += count
        self._frames.drop(reason, count)

    def add_frame(
        self, frame: bytes | memoryview, ts: float, linktype: int = LINKTYPE_ETHERNET
    ) -> None:
        """Take one captured frame."""
        if self._read_plain is not None and linktype == LINKTYPE_ETHERNET:
            plain = self._read_plain(frame)  # the usual frame, in C
            if plain is not None:
                self._count_usual(1)
                self._add_response(plain[0], plain[1], ts)
                return
        self._add_unusual(frame, ts, linktype)

    def take_block(self, ring: memoryview, start: int, size: int) -> tuple[int, bool]:
        """Take every frame of the receive ring block at ``start`` (``size`` bytes) as
        :meth:`add_frame` would, and give what :func:`capture.packetring.read_block`
        gives. Where C was built, the block is walked there and each usual frame's
        response folded there, step for step as :meth:`_add_response` folds it, into
        this folder's own dicts and with the same keys: no Python runs for a usual
        frame unless it turns the RecentKeys or retracts a rewritten response (a new
        entry of the window, a ``FoldedAnswer``, is made there); any other frame goes
        to :meth:`_add_unusual`."""
        if self._fold_block is None:
            return read_block(ring, start, size, self.add_frame)
        frames, sound, usual, duplicates, folded = self._fold_block(
            ring, start, size, self, self._add_unusual
        )
        self._count_usual(usual)
        fold = self._fold
        fold.seen += usual
        if duplicates:
            fold.dropped[DROP_DUPLICATE] += duplicates
        if folded:
            fold.dropped[DROP_FOLDED] += folded
        return frames, sound

    def _count_usual(self, count: int) -> None:
        """Frames read in C: each one a frame taken and a response parsed."""
        frames, parse = self._frames, self._parse
        frames.seen += count
        frames.emitted += count
        parse.seen += count
        parse.emitted += count

    def _add_unusual(
        self, frame: bytes | memoryview, ts: float, linktype: int = LINKTYPE_ETHERNET
    ) -> None:
        """Take a frame that is not the usual one (or any frame, without C), in Python."""
        frames = self._frames
        frames.seen += 1
        segment = decode_frame(frame, linktype)
        if isinstance(segment, str):
            frames.dropped[segment] += 1
            return
        if segment.src_port != 53:
            frames.dropped[DROP_NOT_FROM_PORT_53] += 1
            return
        if segment.transport == "tcp" and not segment.payload:
            frames.dropped[DROP_TCP_NO_PAYLOAD] += 1  # handshake and ACK-only segments
            return
        frames.emitted += 1
        self.add_segment(segment, ts)

    def add_segment(self, segment: Segment, ts: float) -> None:
        """Take one UDP datagram or TCP segment that came from port 53."""
        parse = self._parse
        if segment.transport == "udp":
            parse.seen += 1
            outcome = self._read(segment.payload)
            if isinstance(outcome, str):
                parse.dropped[outcome] += 1
            else:
                parse.emitted += 1
                self._add_response(segment, outcome, ts)
            return
        self._tcp.seen += 1
        taken = self._streams.take(segment, ts)
        if taken.duplicate:
            self._tcp.dropped[DUPLICATE] += 1
            return
        self._tcp.emitted += 1
        self._lost_partial(taken.lost)
        for message in taken.messages:
            parse.seen += 1
            outcome = self._read(message)
            if isinstance(outcome, str):
                parse.dropped[outcome] += 1
            else:
                parse.emitted += 1
                self._add_response(segment, outcome, ts)

    def _lost_partial(self, count: int) -> None:
        if count:
            self._parse.seen += count
            self._parse.dropped[DROP_TCP_PARTIAL] += count

    def _add_response(self, segment: Segment, response: DnsResponse, ts: float) -> None:
        fold = self._fold
        fold.seen += 1
        if ts > self._turn_at:
            self._turn(ts)
        # The server's address is not part of a sighting: kube-proxy rewrites
        # it between the DNS pod's veth (pod IP) and the client's (service IP).
        sighting = hash(
            (
                segment.dst_ip,
                segment.dst_port,
                response.msg_id,
                segment.transport,
                response.qname,
                response.qtype,
            )
        )
        if self._seen.put(sighting, True):
            fold.dropped[DROP_DUPLICATE] += 1
            return
        self._servers[segment.src_ip] = ts
        # The key of the answer: the window entry's fields after its time, in their order.
        key = (
            segment.dst_ip,
            segment.src_ip,
            segment.transport,
            response.qname,
            response.qtype,
            response.answers,
            response.cnames,
        )
        key_hash = hash(key)
        response_key = hash(
            (
                segment.src_ip,
                segment.src_port,
                segment.dst_port,
                response.msg_id,
                segment.transport,
                response.qname,
                response.qtype,
            )
        )
        before = self._destinations.put(response_key, key_hash)
        if before is not None and before != key_hash:
            self._retract(before)
        folded = self._window.get(key_hash)
        if folded is None:
            self._window[key_hash] = FoldedAnswer(
                SCHEMA_VERSION, self.cluster, self.node, ts, *key, response.ttl, 1
            )
            return
        fold.dropped[DROP_FOLDED] += 1
        folded.count += 1
        if response.ttl < folded.ttl:
            folded.ttl = response.ttl
        if ts < folded.ts:
            folded.ts = ts

    def _retract(self, key_hash: int) -> None:
        """Take back one response counted under the key of ``key_hash``: it reached a
        later destination."""
        folded = self._window.get(key_hash)
        if folded is None:
            return  # flushed already: the copies straddled a flush
        fold = self._fold
        fold.dropped[DROP_REWRITTEN] += 1
        if folded.count == 1:
            del self._window[key_hash]
        else:
            folded.count -= 1
            fold.dropped[DROP_FOLDED] -= 1

    def _turn(self, now: float) -> None:
        self._seen.turn(now)
        self._destinations.turn(now)
        self._turn_at = now + self.dedup_seconds / 4

    def flush(self, now: float) -> list[DnsAnswer]:
        """The records of the window that ends now; starts a new window."""
        return self.close_window(now).records()

    def close_window(self, now: float) -> ClosedWindow:
        """The window that ends now, its records not made yet; starts a new window.
        Its records can be made while the folder takes the next window's answers:
        the capture thread need not wait for them."""
        window, self._window = self._window, {}
        self._lost_partial(self._streams.expire(now))
        servers = self._servers
        local = self.local_addresses
        serving: set[str] | dict[str, float] = servers
        if not local.isdisjoint(servers):  # a DNS server in the node's own namespace
            serving = servers.keys() | local
        to_servers = [
            key_hash for key_hash, folded in window.items() if folded.client_ip in serving
        ]
        for key_hash in to_servers:
            del window[key_hash]
        self._fold.dropped[DROP_TO_DNS_SERVER] += len(to_servers)
        self._fold.emitted += len(window)
        self._turn(now)  # an idle capture forgets too
        remembered = now - self.server_memory
        self._servers = {ip: ts for ip, ts in servers.items() if ts >= remembered}
        return ClosedWindow(list(window.values()))


class ClosedWindow:
    """A flush window that has ended, whose answers are sorted once, outside the
    capture thread's lock: by :meth:`answers` (or :meth:`records`)."""

    __slots__ = ("_entries",)

    def __init__(self, entries: list[FoldedAnswer]) -> None:
        self._entries = entries

    def answers(self) -> list[FoldedAnswer]:
        """Its answers, oldest first (those seen at the same time in the order they
        came), each encoding as its wire record; a second call gives none."""
        entries, self._entries = self._entries, []
        entries.sort(key=_first_seen)
        return entries

    def records(self) -> list[DnsAnswer]:
        """Its answers as wire records, as :meth:`answers` gives them."""
        # Each answer let go of as its record is made: the two lists are never
        # whole at once.
        return [folded.answer() for folded in drained(self.answers())]


def _first_seen(folded: FoldedAnswer) -> float:
    return folded.ts
