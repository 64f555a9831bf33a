"""The embedded default sink: the map in a SQLite file (``callmap sink sqlite``).

Current state and lifecycle history in the schema of :mod:`sinks.service.formats.sqlschema`,
migrated on open. Each flush is one transaction (WAL journal, ``synchronous=
FULL``: committed means on disk) of tombstone deletes, guarded upserts and
history inserts, so replaying a batch changes nothing. sqlite3 runs on one
worker thread of its own, never on the event loop. A busy or locked database,
a full disk or an I/O error is a :class:`TemporaryError`; anything else (a
file that is not a database, a schema from newer code) is permanent.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from callmap.errors import PermanentError, TemporaryError
from callmap.wire import Edge
from sinks.changes import Change
from sinks.lifecycle import reduce_batch
from sinks.service.destination import Sink
from sinks.service.formats import sqlschema as schema
from sinks.service.stats import SinkStats

T = TypeVar("T")

# SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_PROTOCOL
_TEMPORARY_CODES = {5, 6, 10, 13, 14, 15}


@contextmanager
def map_sqlite_errors(action: str) -> Iterator[None]:
    """Translate sqlite3 exceptions raised while doing ``action``."""
    try:
        yield
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _TEMPORARY_CODES:
            raise TemporaryError(f"{action}: {exc}") from exc
        raise PermanentError(f"{action}: {exc}") from exc
    except ValueError as exc:  # schema.pending: a database from newer code
        raise PermanentError(f"{action}: {exc}") from exc


def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    connection = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection


def migrate(connection: sqlite3.Connection) -> list[int]:
    """Run every pending migration, each in its own transaction; return their versions."""
    connection.execute(schema.migrations_table(schema.SQLITE))
    ran: list[int] = []
    while True:
        connection.execute("BEGIN IMMEDIATE")  # one migrator at a time
        try:
            rows = connection.execute(f"SELECT version FROM {schema.MIGRATIONS_TABLE}")
            todo = schema.pending({row[0] for row in rows})
            if not todo:
                connection.execute("COMMIT")
                return ran
            migration = todo[0]
            for statement in migration.statements(schema.SQLITE):
                connection.execute(statement)
            connection.execute(
                schema.record_migration(schema.SQLITE),
                (migration.version, migration.description, time.time()),
            )
            connection.execute("COMMIT")
            ran.append(migration.version)
        except BaseException:
            connection.execute("ROLLBACK")
            raise


def write_batch(connection: sqlite3.Connection, batch: Sequence[Change]) -> int:
    """One transaction: deletes, guarded upserts, history. Returns edges written."""
    dialect = schema.SQLITE
    writes = reduce_batch(batch)
    connection.execute("BEGIN IMMEDIATE")
    try:
        deletes = [(w.edge_id,) for w in writes if w.delete_first]
        connection.executemany(schema.delete_edge(dialect), deletes)
        upserts = [schema.edge_row(w.upsert, dialect) for w in writes if w.upsert is not None]
        connection.executemany(schema.upsert_edge(dialect), upserts)
        events = [schema.event_row(c.edge) for c in batch if c.edge is not None]
        connection.executemany(schema.insert_event(dialect), events)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return len(batch)


def read_edges(connection: sqlite3.Connection) -> list[Edge]:
    return [schema.edge_from_row(row) for row in connection.execute(schema.select_edges())]


class SqliteSink(Sink):
    """Keeps the map in a SQLite database file."""

    kind = "sqlite"

    def __init__(
        self, path: Path, *, busy_timeout: float = 5.0, stats: SinkStats | None = None
    ) -> None:
        super().__init__(stats)
        self.path = path
        self.busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-sink")
        self._connection: sqlite3.Connection | None = None

    async def _run(self, action: str, function: Callable[[], T]) -> T:
        with map_sqlite_errors(action):
            return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    async def open(self) -> None:
        def prepare() -> None:
            if self._connection is None:
                self._connection = connect(self.path, self.busy_timeout)
            migrate(self._connection)

        await self._run(f"open {self.path}", prepare)

    async def _write(self, batch: Sequence[Change]) -> int:
        if self._connection is None:
            await self.open()
        connection = self._connection
        assert connection is not None
        return await self._run(f"write to {self.path}", lambda: write_batch(connection, batch))

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._run(f"close {self.path}", connection.close)
        self._executor.shutdown(wait=False)


async def load_edges(path: Path) -> list[Edge]:
    """Every edge stored in the SQLite file at ``path`` (read-only)."""

    def read() -> list[Edge]:
        if not path.exists():
            raise PermanentError(f"no SQLite database at {path}")
        connection = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        connection.row_factory = sqlite3.Row
        try:
            return read_edges(connection)
        finally:
            connection.close()

    with map_sqlite_errors(f"read {path}"):
        return await asyncio.to_thread(read)
