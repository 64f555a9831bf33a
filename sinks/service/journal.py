"""Offsets an append-only sink has written, kept next to its output.

Files, syslog and Kafka topics cannot be written idempotently by key, so those
sinks remember, per topic partition, the next offset they have *not* written
yet. After a crash between a write and the Kafka commit, the replayed messages
fall below that mark and are skipped. The journal is saved atomically (write,
fsync, rename, fsync the directory) after the target's write and before the
offset commit; it may also carry the sink's own state (a file's size).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from callmap.errors import PermanentError, TemporaryError
from sinks.changes import Position


def fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class OffsetJournal:
    """Next unwritten offset per (topic, partition); in memory only if ``path`` is None."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._next: dict[tuple[str, int], int] = {}
        self.extra: dict[str, Any] = {}

    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            document = json.loads(self.path.read_text())
            self._next = {
                (topic, int(partition)): int(offset)
                for topic, partition, offset in document.get("offsets", [])
            }
            self.extra = dict(document.get("state", {}))
        except (OSError, ValueError, TypeError) as exc:
            raise PermanentError(f"cannot read the sink journal {self.path}: {exc}") from exc

    def written(self, position: Position | None) -> bool:
        """True if the message at ``position`` was written before."""
        if position is None:
            return False
        return position.offset < self._next.get((position.topic, position.partition), 0)

    def advance(self, positions: Iterable[Position | None]) -> None:
        for position in positions:
            if position is None:
                continue
            key = (position.topic, position.partition)
            self._next[key] = max(self._next.get(key, 0), position.offset + 1)

    def offsets(self) -> dict[tuple[str, int], int]:
        return dict(self._next)

    def restore(self, offsets: dict[tuple[str, int], int], state: dict[str, Any]) -> None:
        """Go back to an earlier in-memory state (after a failed save)."""
        self._next = dict(offsets)
        self.extra = dict(state)

    def save(self) -> None:
        if self.path is None:
            return
        document = {
            "offsets": [[t, p, o] for (t, p), o in sorted(self._next.items())],
            "state": self.extra,
        }
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            with temporary.open("w") as handle:
                json.dump(document, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
            fsync_directory(self.path.parent)
        except OSError as exc:
            raise TemporaryError(f"cannot save the sink journal {self.path}: {exc}") from exc
