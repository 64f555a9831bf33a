"""Waiting longer after each failure, and a retry loop built on it.

Every loop that retries a fault that may pass (a broker or API server away, a
timeout) waits by a :class:`Backoff`: ``first`` seconds, doubling up to
``most``, and back to ``first`` after a success. :func:`retrying` is the loop
for one step that either succeeds or raises :class:`TemporaryError`, and
:func:`give_up_after` the start-up budget every long-running command gives
Kafka: retry for a while, then fail loudly (exit non-zero) rather than wait
unseen.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from callmap.errors import TemporaryError

log = logging.getLogger(__name__)

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[object]]


@dataclass(slots=True)
class Backoff:
    """The pause before the next attempt: exponential, capped, reset by a success."""

    first: float = 0.5
    """Seconds to wait after the first failure."""
    most: float = 30.0
    """The longest wait."""
    _next: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.most:
            raise ValueError(f"backoff: need 0 < first <= most, got {self.first} and {self.most}")
        self._next = self.first

    def next(self) -> float:
        """The pause to wait now; the following one is twice as long, up to ``most``."""
        pause = self._next
        self._next = min(pause * 2, self.most)
        return pause

    def reset(self) -> None:
        """After a success: the next failure waits ``first`` again."""
        self._next = self.first


async def retrying(
    step: Callable[[], Awaitable[T]],
    what: str,
    backoff: Backoff | None = None,
    *,
    sleep: Sleep = asyncio.sleep,
    on_retry: Callable[[TemporaryError], None] | None = None,
) -> T:
    """``step()``, again after a growing pause for as long as it raises TemporaryError.

    ``on_retry`` sees each fault before the pause (to count it, or to re-raise
    it when the caller is stopping); any other exception ends the loop.
    """
    backoff = backoff or Backoff()
    while True:
        try:
            return await step()
        except TemporaryError as exc:
            if on_retry is not None:
                on_retry(exc)
            pause = backoff.next()
            log.warning("%s: %s; retrying in %.1fs", what, exc, pause)
            await sleep(pause)


DEFAULT_START_TIMEOUT = 120.0
"""Seconds a command keeps trying to reach Kafka at start (``--start-timeout``)."""


def give_up_after(
    seconds: float,
    clock: Callable[[], float] = time.monotonic,
    *,
    or_when: Callable[[], bool] = lambda: False,
) -> Callable[[TemporaryError], None]:
    """An ``on_retry`` for :func:`retrying` that re-raises the fault once ``seconds``
    have passed since it was made, or at once when ``or_when()`` (a stop requested)."""
    deadline = clock() + seconds

    def check(fault: TemporaryError) -> None:
        if or_when() or clock() >= deadline:
            raise fault

    return check
