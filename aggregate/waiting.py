"""Source edges the hub cannot name yet, waiting for identities. Pure.

An edge whose end is still an ``ip`` or an unexported clusterset name may be
named a moment later: the cluster that address belongs to was mirrored in
after the edge (its topics are found every few seconds), or its identities
are still on their way. Announcing the raw address first and the name after
would put a call on the global map twice, once under a wrong name. So such
an edge waits, up to ``grace`` seconds from when the hub first held it,
and is announced with whatever is known when that ends, as the stream
workers do with their own late identities.

Only an edge not announced yet waits: one that already contributes to a
global edge is named again in place when identities change.
"""

from __future__ import annotations

from dataclasses import dataclass

from callmap.wire import Edge


@dataclass(slots=True)
class Waiter:
    """One source edge's latest version, and when its wait ends."""

    cluster: str
    edge: Edge
    due: float


class Waiting:
    """Source edges (by hub key) waiting for identities."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._waiters: dict[str, Waiter] = {}

    def wait(self, key: str, cluster: str, edge: Edge, now: float) -> bool:
        """Hold ``edge`` (its latest version) if its wait has not ended; True if held."""
        waiter = self._waiters.get(key)
        due = now + self.grace if waiter is None else waiter.due
        if now >= due:
            self._waiters.pop(key, None)
            return False
        self._waiters[key] = Waiter(cluster, edge, due)
        return True

    def drop(self, key: str) -> None:
        """``key`` was named, or expired in its cluster: it waits no more."""
        self._waiters.pop(key, None)

    def take_due(self, now: float) -> list[Waiter]:
        """The waiters whose wait ended, removed: they are announced as they are."""
        due = [key for key, waiter in self._waiters.items() if waiter.due <= now]
        return [self._waiters.pop(key) for key in due]

    def waiters(self) -> list[Waiter]:
        """Every waiter, to name again after identities changed."""
        return list(self._waiters.values())

    def clear(self) -> None:
        self._waiters.clear()

    def __contains__(self, key: object) -> bool:
        return key in self._waiters

    def __len__(self) -> int:
        return len(self._waiters)
