"""Repeats found in a raw message's bytes, resolved without decoding them. Pure.

Capture publishes each call once per one-second window, so a warm worker
receives the same records window after window, different only in their time
(``ts``) and ``count``. A record whose bytes, but for those two values, equal
a record's that resolved to a plain route resolves to that route again, as
long as the identities the route came from hold. :class:`Repeats` keeps such
records' *keys* (their bytes without the two values) in a table written in C
(``streams/_repeats.c``), and finds them in a message without decoding it. A
message all of whose records it knows is sighted straight away: the C calls
the combiner's ``seen_each`` for each record, as the routes' hot loop does.
Any other message is decoded and resolved as before, and teaches the table
its records.

What may be learnt, and when it is forgotten, is the routes' own rule
(:mod:`streams.routes`), kept exactly:

- a record is learnt only when the inline path of :meth:`Routes.answers` or
  :meth:`Routes.connections` takes it (one holder of its IP, a plain route;
  for a socket also no health, TCP), after it decoded in full and its ``ts``
  and ``count`` as read from its bytes equal the decoded ones;
- a DNS answer's key holds while its client's holding covers the answer's own
  time (``lo <= ts < hi``); a socket's ``first_seen`` is part of its key;
- every identity update of an IP or a pod forgets the keys that depend on it
  (:attr:`streams.identity.IdentityStore.changes`) before the next message,
  and a service update forgets every DNS key (as the routes by name are
  dropped). A pruning of the routes drops only routes whose identities
  changed, so their keys are gone already.

Nothing is sighted from a message that does not decode: either every record
of it is known (so its bytes are those of records that decoded, with numbers
read strictly as JSON), or it is decoded in full first.

The C table is optional: without a C compiler every message is decoded
(:data:`AVAILABLE` is False), as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from callmap.wire.records import EdgeSource
from streams.combine import Slot

try:
    from streams._repeats import RepeatTable
except ImportError:  # pragma: no cover - an install without a C compiler
    RepeatTable = None

AVAILABLE = RepeatTable is not None
RECORDS_START = b',"records":['
RECORDS_END = b"]}"
MAX_HEADS = 10_000
"""Batch heads (cluster and node) remembered; more and they are forgotten at once."""

Sighted = tuple[tuple[Slot, ...], int | None, EdgeSource]
"""What a known record's route sights: its slots, the port and the source."""
Hit = tuple[Sighted, float, int]
"""A known record: what it sights, its ``ts``, its ``count``."""


@dataclass(frozen=True, slots=True)
class Miss:
    """A record the table did not know: its place, key and values as read from its bytes
    (``key`` None: it cannot be keyed, and is never learnt)."""

    index: int
    key: bytes | None
    ts: float | None
    count: int | None


class Applied(NamedTuple):
    """A message whose records were all known, and sighted: how many, and the sightings."""

    records: int
    sightings: int


class Scan(NamedTuple):
    """A message's records as the table found them, when some were not known (nothing
    of it is sighted yet)."""

    hits: list[Hit | None]
    misses: list[Miss]


def head_of(value: bytes) -> tuple[bytes, int, int] | None:
    """The batch's head (its fields before the records) and where its records lie,
    or None when the message is not laid out as callmap's encoder writes it."""
    at = value.find(RECORDS_START)
    if at < 0 or not value.endswith(RECORDS_END):
        return None
    start = at + len(RECORDS_START)
    return value[:start], start, len(value) - len(RECORDS_END)


class Heads:
    """Batch heads seen in messages that decoded in full, and their cluster."""

    def __init__(self) -> None:
        self._clusters: dict[bytes, str] = {}

    def cluster(self, head: bytes) -> str | None:
        return self._clusters.get(head)

    def learn(self, head: bytes, cluster: str) -> None:
        if len(self._clusters) >= MAX_HEADS:
            self._clusters.clear()
        self._clusters[head] = cluster


class Repeats:
    """One cluster's learnt record keys of one topic, and which identities each depends on."""

    def __init__(self, max_keys: int, *, counted: bool) -> None:
        """``counted``: the records have a ``count`` (DNS answers), read like ``ts``."""
        assert RepeatTable is not None
        self._table = RepeatTable()
        self._max = max_keys
        self._counted = counted
        self._keys_of: dict[str, list[bytes]] = {}
        """The keys that depend on each IP or pod UID (a key dropped through one of its
        names stays listed under the others: dropping it again does nothing)."""
        self._listed = 0

    def scan(
        self,
        value: bytes,
        start: int,
        end: int,
        seen: Callable[..., int],
        now: float,
        limit: int,
    ) -> Applied | Scan | None:
        """The records of ``value[start:end]``. When every one is known (and there are
        at most ``limit``), each is sighted at once through ``seen`` (the combiner's
        ``seen_each``, at ``now``); else what was found, none of it sighted. None: the
        records are not laid out as callmap's encoder writes them."""
        found = self._table.scan(value, start, end, self._counted, seen, now, limit)
        if found is None:
            return None
        first, second = found
        if isinstance(first, int):
            return Applied(first, second)
        return Scan(first, [Miss(*miss) for miss in second])

    def learn(self, key: bytes, value: Sighted, lo: float, hi: float, on: Iterable[str]) -> None:
        """Records of ``key`` at ``lo <= ts < hi`` sight ``value`` until an identity of
        ``on`` (IPs, pod UIDs) changes."""
        if len(self._table) >= self._max or self._listed >= 4 * self._max:
            self.clear()
        self._table.learn(key, value, lo, hi)
        for name in on:
            self._keys_of.setdefault(name, []).append(key)
            self._listed += 1

    def forget(self, changed: Iterable[str]) -> None:
        """Forget the keys that depend on the ``changed`` IPs and pod UIDs."""
        keys_of, drop = self._keys_of, self._table.drop
        for name in changed:
            keys = keys_of.pop(name, ())
            self._listed -= len(keys)
            for key in keys:
                drop(key)

    def clear(self) -> None:
        self._table.clear()
        self._keys_of.clear()
        self._listed = 0

    def __len__(self) -> int:
        return len(self._table)
