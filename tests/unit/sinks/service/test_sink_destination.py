"""The sink contract: add() buffers, flush() writes all or keeps all, journals skip replays.

The target here is a list in memory that can be switched off: the contract is
about the buffer and the journal, not about any real target (those are in
tests/integration/sinks).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from callmap.errors import TemporaryError
from callmap.wire import Edge, Endpoint
from sinks.changes import Change, Position
from sinks.service.destination import Sink
from sinks.service.journal import OffsetJournal


class ListSink(Sink):
    kind = "list"

    def __init__(self, journal: OffsetJournal | None = None) -> None:
        super().__init__(journal=journal)
        self.written: list[str] = []
        self.up = True

    async def _write(self, batch: Sequence[Change]) -> int:
        if not self.up:
            raise TemporaryError("target down")
        self.written += [change.edge_id for change in batch]
        return len(batch)


def change(offset: int, partition: int = 0) -> Change:
    edge = Edge(
        edge_id=f"e{partition}-{offset}",
        event="new",
        cluster="c",
        client=Endpoint(type="ip", ip="10.0.0.1"),
        server=Endpoint(type="ip", ip="10.0.0.2"),
        first_seen=1.0,
        last_seen=1.0,
    )
    return Change.of(edge, Position("t", partition, offset))


async def test_a_failed_flush_keeps_every_change_in_order() -> None:
    sink = ListSink()
    for offset in range(3):
        sink.add(change(offset))
    sink.up = False
    with pytest.raises(TemporaryError):
        await sink.flush()
    assert sink.buffered == 3 and not sink.stats.target_up
    sink.add(change(3))
    sink.up = True
    await sink.flush()
    assert sink.written == ["e0-0", "e0-1", "e0-2", "e0-3"]
    assert sink.buffered == 0 and sink.stats.written == 4 and sink.stats.target_up


async def test_a_journal_skips_what_was_written_before_a_crash(tmp_path: Path) -> None:
    journal_file = tmp_path / "journal.json"
    first = ListSink(OffsetJournal(journal_file))
    await first.open()
    for offset in range(3):
        first.add(change(offset))
    await first.flush()  # written and journalled; the crash comes before the Kafka commit

    second = ListSink(OffsetJournal(journal_file))
    await second.open()
    for offset in range(5):  # Kafka replays from the last commit
        second.add(change(offset))
    second.add(change(0, partition=1))  # another partition is not affected
    await second.flush()
    assert second.written == ["e0-3", "e0-4", "e1-0"]
    assert second.stats.skipped["already_written"] == 3


async def test_a_journal_that_cannot_be_saved_leaves_the_batch_to_retry(tmp_path: Path) -> None:
    sink = ListSink(OffsetJournal(tmp_path / "missing-dir" / "journal.json"))
    sink.add(change(0))
    with pytest.raises(TemporaryError, match="journal"):
        await sink.flush()
    assert sink.buffered == 1 and not sink.journal.written(Position("t", 0, 0))  # type: ignore[union-attr]
    (tmp_path / "missing-dir").mkdir()
    await sink.flush()
    assert sink.journal.written(Position("t", 0, 0))  # type: ignore[union-attr]
