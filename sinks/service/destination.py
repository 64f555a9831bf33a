"""The contract every sink keeps: ``add()`` buffers, ``flush()`` writes durably.

The consumer loop (:mod:`sinks.service.runner`) adds every message it reads, calls
``flush()`` and commits the offsets only after ``flush()`` returned: what was
committed is on the target. ``flush()`` raises
:class:`~callmap.errors.TemporaryError` when the target is away; the buffer is
kept as it was, and the loop calls ``flush()`` again after a backoff, so
nothing is lost or reordered. :class:`~callmap.errors.PermanentError` stops
the sink without committing.

Keyed targets (SQLite, PostgreSQL) are idempotent by ``edge_id`` and event key.
Append-only targets (files, syslog, Kafka) pass an :class:`OffsetJournal`:
``add()`` then skips messages already written before a crash, and ``flush()``
saves the journal after the write and before the commit.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar

from callmap.errors import TemporaryError
from sinks.changes import Change
from sinks.service.journal import OffsetJournal
from sinks.service.stats import SinkStats


class Sink(abc.ABC):
    """Base of every sink: a buffer of changes and the write that empties it."""

    kind: ClassVar[str]

    def __init__(self, stats: SinkStats | None = None, journal: OffsetJournal | None = None):
        self.stats = stats or SinkStats(self.kind)
        self.journal = journal
        self._buffer: list[Change] = []

    @property
    def buffered(self) -> int:
        """Changes added and not written yet."""
        return len(self._buffer)

    def add(self, change: Change) -> None:
        """Buffer one change (never blocks, never does I/O)."""
        if self.journal is not None and self.journal.written(change.position):
            self.stats.skip("already_written")
            return
        self._buffer.append(change)

    async def open(self) -> None:
        """Connect and prepare the target; raises TemporaryError while it is away."""
        if self.journal is not None:
            self.journal.load()

    async def flush(self) -> None:
        """Write every buffered change durably, or raise and keep them all."""
        if not self._buffer:
            return
        batch = list(self._buffer)
        try:
            written = await self._write(batch)
            if self.journal is not None:
                self._save_journal(batch)
        except TemporaryError:
            self.stats.target_up = False
            raise
        self.stats.target_up = True
        del self._buffer[: len(batch)]
        self.stats.written += written

    def discard(self) -> None:
        """Forget buffered changes (their offsets were not committed: they come again)."""
        self._buffer.clear()

    async def close(self) -> None:  # noqa: B027 - a hook; most targets hold something
        """Release the target; does not flush."""

    def journal_state(self) -> dict[str, Any]:
        """State the sink keeps in its journal next to the offsets (see LineFileSink)."""
        return self.journal.extra if self.journal is not None else {}

    def _save_journal(self, batch: Sequence[Change]) -> None:
        assert self.journal is not None
        before, state = self.journal.offsets(), dict(self.journal.extra)
        self.journal.advance(change.position for change in batch)
        self.journal.extra = self.journal_state()
        try:
            self.journal.save()
        except TemporaryError:
            self.journal.restore(before, state)
            raise

    @abc.abstractmethod
    async def _write(self, batch: Sequence[Change]) -> int:
        """Write ``batch`` durably; return how many records reached the target."""
