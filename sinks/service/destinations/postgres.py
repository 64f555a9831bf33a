"""The map in PostgreSQL through asyncpg (``callmap sink postgres``).

The schema of :mod:`sinks.service.formats.sqlschema`, migrated on open under an advisory lock (so
replicas starting together migrate once). A flush is one transaction: the
batch is first reduced to one write per edge, then deletes, guarded upserts
and history inserts go out as pipelined ``executemany`` batches.

asyncpg's exceptions stop here: connection failures, a server shutting down
or starting, too many connections, serialization failures and deadlocks are
:class:`TemporaryError` (the connection is dropped and made again on the next
try); authentication and everything else is :class:`PermanentError`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from callmap.errors import PermanentError, TemporaryError
from callmap.wire import Edge
from sinks.changes import Change
from sinks.lifecycle import reduce_batch
from sinks.service.destination import Sink
from sinks.service.formats import sqlschema as schema
from sinks.service.stats import SinkStats

# SQLSTATE classes that pass: connection exception, insufficient resources,
# operator intervention (shutdown, restart, cancel), transaction rollback.
_TEMPORARY_CLASSES = ("08", "53", "57", "40")
# An arbitrary, fixed key: callmap's migrations hold this advisory lock.
_MIGRATION_LOCK = 0x63616C6C6D6170


@asynccontextmanager
async def map_postgres_errors(action: str) -> AsyncIterator[None]:
    """Translate asyncpg and socket exceptions raised while doing ``action``."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        state = getattr(exc, "sqlstate", "") or ""
        if state[:2] in _TEMPORARY_CLASSES:
            raise TemporaryError(f"{action}: {exc}") from exc
        raise PermanentError(f"{action}: {exc}") from exc
    except (OSError, TimeoutError, asyncpg.ConnectionDoesNotExistError) as exc:
        raise TemporaryError(f"{action}: PostgreSQL unreachable: {exc}") from exc
    except asyncpg.InterfaceError as exc:
        if "closed" in str(exc):  # the connection broke between two uses
            raise TemporaryError(f"{action}: connection lost: {exc}") from exc
        raise PermanentError(f"{action}: {exc}") from exc
    except ValueError as exc:
        raise PermanentError(f"{action}: {exc}") from exc


async def migrate(connection: Any) -> list[int]:
    """Run every pending migration (each in its own transaction); return their versions."""
    ran: list[int] = []
    while True:
        async with connection.transaction():
            # The lock comes first: even CREATE TABLE IF NOT EXISTS races without it.
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await connection.execute(schema.migrations_table(schema.POSTGRES))
            rows = await connection.fetch(f"SELECT version FROM {schema.MIGRATIONS_TABLE}")
            todo = schema.pending({row["version"] for row in rows})
            if not todo:
                return ran
            migration = todo[0]
            for statement in migration.statements(schema.POSTGRES):
                await connection.execute(statement)
            await connection.execute(
                schema.record_migration(schema.POSTGRES),
                migration.version,
                migration.description,
                time.time(),
            )
            ran.append(migration.version)


async def write_batch(connection: Any, batch: Sequence[Change]) -> int:
    dialect = schema.POSTGRES
    writes = reduce_batch(batch)
    async with connection.transaction():
        deletes = [(w.edge_id,) for w in writes if w.delete_first]
        if deletes:
            await connection.executemany(schema.delete_edge(dialect), deletes)
        upserts = [schema.edge_row(w.upsert, dialect) for w in writes if w.upsert is not None]
        if upserts:
            await connection.executemany(schema.upsert_edge(dialect), upserts)
        events = [schema.event_row(c.edge) for c in batch if c.edge is not None]
        if events:
            await connection.executemany(schema.insert_event(dialect), events)
    return len(batch)


class PostgresSink(Sink):
    """Keeps the map in a PostgreSQL database."""

    kind = "postgres"

    def __init__(
        self, dsn: str, *, connect_timeout: float = 10.0, stats: SinkStats | None = None
    ) -> None:
        super().__init__(stats)
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self._connection: Any = None

    async def open(self) -> None:
        async with map_postgres_errors("connect to PostgreSQL"):
            if self._connection is None or self._connection.is_closed():
                self._connection = await asyncpg.connect(self.dsn, timeout=self.connect_timeout)
            await migrate(self._connection)

    async def _write(self, batch: Sequence[Change]) -> int:
        try:
            if self._connection is None or self._connection.is_closed():
                await self.open()
            async with map_postgres_errors("write to PostgreSQL"):
                return await write_batch(self._connection, batch)
        except TemporaryError:
            await self._drop()
            raise

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close(timeout=5)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                connection.terminate()


async def load_edges(dsn: str) -> list[Edge]:
    """Every edge stored in the PostgreSQL database at ``dsn``."""
    async with map_postgres_errors("read from PostgreSQL"):
        connection = await asyncpg.connect(dsn, timeout=10)
        try:
            rows = await connection.fetch(schema.select_edges())
        finally:
            await connection.close()
    return [schema.edge_from_row(row) for row in rows]
