"""Which external names each client was told an address belongs to, and when. Pure.

A connection to an address outside the cluster is named by the DNS answer
that gave its client that address (docs/streams.md). Answers and
connections reach the stream app on different topics, and not in the order
they happened: a worker catching up a backlog, or retrying a connection
after the grace period, reads answers given *after* the connection before
it resolves it. So each client keeps, for each name, the whole time the
name was valid for an address, not only its latest answer: a client that
asks again every few seconds holds one run of validity, from its first
answer to the last one's expiry, and a connection anywhere in it is named.
"""

from __future__ import annotations

import math

from callmap.wire import DnsAnswer

DEFAULT_DNS_SLACK = 30.0
"""Seconds an answer stays valid after its TTL, and may follow the connection it names
(capture clocks and batching)."""
DEFAULT_DNS_RETENTION = 3600.0

Run = tuple[float, float, float]
"""A name valid without a gap: (first answer, last answer, valid until)."""


class DnsMemory:
    """Which names each client was told an IP belongs to, and when they were valid.

    A client is named by its identity (a pod's UID, a node's name) when it is
    known, so that an answer asked over IPv4 names the IPv6 address the client
    then connects from; by its address otherwise. One IP may carry several
    names (a CDN): each client keeps the names *it* asked for. Answers whose
    validity overlaps join one :data:`Run`; a name asked again after it had
    expired starts another. Runs are kept ``retention`` seconds after their
    last answer (by answer time), and forgotten in one pass a quarter
    retention apart: memory holds at most 1.25 retentions of runs.
    """

    def __init__(
        self, slack: float = DEFAULT_DNS_SLACK, retention: float = DEFAULT_DNS_RETENTION
    ) -> None:
        self.slack = slack
        self.retention = retention
        self._names: dict[tuple[str, str], dict[str, list[Run]]] = {}
        self._next_sweep = -math.inf
        self.sweeps = 0
        """Passes that forgot old answers: at most one per quarter retention of answer time."""
        self.ambiguous = 0
        """Connections to an IP the client had been given under several names at once."""

    def remember(self, client: str, answer: DnsAnswer, name: str) -> None:
        """``answer`` told ``client`` that its addresses are the external ``name``."""
        ts = answer.ts
        valid_until = ts + answer.ttl + self.slack
        for ip in answer.answers:
            names = self._names.setdefault((client, ip), {})
            runs = names.get(name)
            if runs is None:
                names[name] = [(ts, ts, valid_until)]
                continue
            first, last, until = runs[-1]
            if first <= ts <= until:  # the common case: the latest run goes on
                if ts > last or valid_until > until:
                    runs[-1] = (first, max(last, ts), max(until, valid_until))
            else:
                _join(runs, ts, valid_until)
        if ts >= self._next_sweep:  # a pass over everything: a quarter retention apart
            self._forget_before(ts - self.retention)
            self._next_sweep = ts + self.retention / 4

    def name(self, clients: tuple[str, ...], ip: str, connected_at: float) -> str | None:
        """The name the first of ``clients`` known was told for ``ip``, if valid then.

        When several names were valid, the one answered last before the
        connection is the one the client asked for; the ambiguity is counted.
        (A run answered on both sides of the connection counts from its first
        answer: which of its answers came last before is not kept.)
        """
        for client in clients:
            names = self._names.get((client, ip))
            if names is None:
                continue
            if len(names) == 1:  # the common case: one name for the address
                for name, runs in names.items():
                    for first, _, until in runs:
                        if first - self.slack <= connected_at <= until:
                            return name
                continue
            valid = [
                (_answered_before(run, connected_at), name)
                for name, runs in names.items()
                for run in runs
                if run[0] - self.slack <= connected_at <= run[2]
            ]
            if not valid:
                continue
            if len(valid) > 1 and len({name for _, name in valid}) > 1:
                self.ambiguous += 1
                before = [v for v in valid if v[0] <= connected_at]
                return max(before or valid)[1]
            return valid[0][1]
        return None

    def _forget_before(self, horizon: float) -> None:
        kept: dict[tuple[str, str], dict[str, list[Run]]] = {}
        for key, names in self._names.items():
            recent = {
                name: fresh for name, runs in names.items() if (fresh := _since(runs, horizon))
            }
            if recent:
                kept[key] = recent
        self._names = kept
        self.sweeps += 1

    def __len__(self) -> int:
        """Runs remembered."""
        return sum(len(runs) for names in self._names.values() for runs in names.values())


def _join(runs: list[Run], ts: float, valid_until: float) -> None:
    """Add an answer at ``ts`` valid until ``valid_until`` to a name's ``runs``."""
    for i in range(len(runs) - 1, -1, -1):  # answers come mostly in order: the last run first
        first, last, until = runs[i]
        if ts <= until and valid_until >= first:
            runs[i] = (min(first, ts), max(last, ts), max(until, valid_until))
            return
    runs.append((ts, ts, valid_until))
    runs.sort()


def _answered_before(run: Run, connected_at: float) -> float:
    """The latest answer of ``run`` known to precede a connection at ``connected_at``."""
    first, last, _ = run
    return last if last <= connected_at else first


def _since(runs: list[Run], horizon: float) -> list[Run]:
    return [run for run in runs if run[1] >= horizon]
