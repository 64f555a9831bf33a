"""Rotated files of JSON lines, fsynced before commit (``sink jsonl``, ``sink ocsf --dir``).

Files are numbered, ``<prefix>-000001.jsonl`` onwards; the highest number is
the one being written, and a new file starts when the next line would take the
current one past ``max_bytes``. Older files can be pruned (``keep``).

Durability and replays: every flush writes its lines at the end of what the
journal (``.<prefix>.journal.json``) records as committed, fsyncs, and only
then saves the journal with the new size and offsets. On start, anything past
the journal's size (a flush that crashed half way) is cut off, and replayed
messages below the journal's offsets are skipped: after a crash the files end
byte for byte as if there had been none. One writer per directory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from callmap.errors import TemporaryError
from sinks.changes import Change
from sinks.service.destination import Sink
from sinks.service.journal import OffsetJournal, fsync_directory
from sinks.service.stats import SinkStats

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_encoder = msgspec.json.Encoder()


def edge_line(change: Change) -> bytes | None:
    """A JSON line of the edges topic: the wire edge, or ``{"edge_id", "event": "deleted"}``."""
    if change.edge is None:
        return _encoder.encode({"v": 1, "edge_id": change.edge_id, "event": "deleted"}) + b"\n"
    return _encoder.encode(change.edge) + b"\n"


class LineFileSink(Sink):
    """Appends one rendered line per change to rotated files in ``directory``."""

    kind = "jsonl"

    def __init__(
        self,
        directory: Path,
        *,
        prefix: str = "edges",
        render: Callable[[Change], bytes | None] = edge_line,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep: int = 0,
        stats: SinkStats | None = None,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", prefix):
            raise ValueError(f"file prefix {prefix!r}: letters, digits, '_', '.', '-' only")
        self.directory = directory
        self.prefix = prefix
        self.render = render
        self.max_bytes = max_bytes
        self.keep = keep
        super().__init__(stats, OffsetJournal(directory / f".{prefix}.journal.json"))
        self._written: dict[str, Any] = {}

    def file(self, sequence: int) -> Path:
        return self.directory / f"{self.prefix}-{sequence:06d}.jsonl"

    def files(self) -> list[tuple[int, Path]]:
        """Every file of this sink, by number."""
        pattern = re.compile(re.escape(self.prefix) + r"-(\d{6,})\.jsonl")
        found = []
        for path in self.directory.iterdir():
            match = pattern.fullmatch(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def _committed(self) -> tuple[int, int]:
        assert self.journal is not None
        return int(self.journal.extra.get("sequence", 1)), int(self.journal.extra.get("size", 0))

    async def open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            await super().open()
            await asyncio.to_thread(self._recover)
        except OSError as exc:
            raise TemporaryError(f"cannot open {self.directory}: {exc}") from exc

    def _recover(self) -> None:
        """Cut off what a crashed flush left beyond the journal."""
        sequence, size = self._committed()
        for number, path in self.files():
            if number > sequence:
                log.warning("removing %s: written by a flush that never completed", path)
                path.unlink()
            elif number == sequence and path.stat().st_size > size:
                log.warning("cutting %s back to %d bytes (an incomplete flush)", path, size)
                os.truncate(path, size)

    async def _write(self, batch: Sequence[Change]) -> int:
        lines: list[bytes] = []
        for change in batch:
            line = self.render(change)
            if line is None:
                self.stats.skip("not_rendered")
            else:
                lines.append(line)
        try:
            await asyncio.to_thread(self._append, lines)
        except OSError as exc:
            raise TemporaryError(f"cannot write to {self.directory}: {exc}") from exc
        return len(lines)

    def _append(self, lines: list[bytes]) -> None:
        sequence, size = self._committed()
        chunks: dict[int, tuple[int, list[bytes]]] = {sequence: (size, [])}
        for line in lines:
            if size > 0 and size + len(line) > self.max_bytes:
                sequence, size = sequence + 1, 0
                chunks[sequence] = (0, [])
            chunks[sequence][1].append(line)
            size += len(line)
        for number, (start, parts) in chunks.items():
            descriptor = os.open(self.file(number), os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.ftruncate(descriptor, start)
                os.lseek(descriptor, start, os.SEEK_SET)
                data = b"".join(parts)
                while data:
                    data = data[os.write(descriptor, data) :]
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        for number, path in self.files():
            stale = number > sequence  # left by an earlier attempt of this flush
            if stale or (self.keep and number <= sequence - self.keep):
                path.unlink()
        fsync_directory(self.directory)  # new files and removals are durable too
        self._written = {"sequence": sequence, "size": size}

    def journal_state(self) -> dict[str, Any]:
        return dict(self._written)


def ocsf_line(change: Change) -> bytes | None:
    """A JSON line of the OCSF event of an edge event; tombstones have none."""
    from sinks.service.formats.ocsf import ocsf_json

    return None if change.edge is None else ocsf_json(change.edge) + b"\n"


def ecs_line(change: Change) -> bytes | None:
    """A JSON line of the ECS document of an edge event; tombstones have none."""
    from sinks.service.formats.ecs import ecs_json

    return None if change.edge is None else ecs_json(change.edge) + b"\n"


LINE_FORMATS: dict[str, tuple[str, Callable[[Change], bytes | None]]] = {
    "edge": ("edges", edge_line),
    "ecs": ("ecs", ecs_line),
}
"""``sink jsonl --format``: the file prefix and the line of each format (the wire edge,
or an ECS document), so that two formats never share a file."""


class OcsfFileSink(LineFileSink):
    """OCSF Network Activity events in rotated JSON Lines files (``ocsf-000001.jsonl``)."""

    kind = "ocsf"

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep: int = 0,
        stats: SinkStats | None = None,
    ) -> None:
        super().__init__(
            directory, prefix="ocsf", render=ocsf_line, max_bytes=max_bytes, keep=keep, stats=stats
        )
