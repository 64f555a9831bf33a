"""The SQL schema of the database sinks, its migrations, and row mapping.

SQLite and PostgreSQL share one schema, written once here and rendered per
dialect:

- ``callmap_edges``: the current state of every edge, one row per ``edge_id``;
  ``client_cluster`` and ``server_cluster`` hold each side's cluster on global
  edges (NULL on a cluster's own, where ``cluster`` applies).
  An upsert replaces a row only with the same or a later state (see
  :func:`sinks.changes.order_key`), so replays and late duplicates change nothing.
- ``callmap_edge_events``: the lifecycle history, one row per event, keyed by
  :func:`sinks.changes.event_key`; a replayed event is ignored.
- ``callmap_schema_migrations``: which migrations ran. Each migration runs once,
  in order, in its own transaction; a database newer than this code is refused.

Values only ever travel as parameters. Pure: statements and tuples, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from callmap.wire import Edge, Endpoint, FlowHealth
from sinks.changes import EVENT_RANK, event_key

EDGES_TABLE = "callmap_edges"
EVENTS_TABLE = "callmap_edge_events"
MIGRATIONS_TABLE = "callmap_schema_migrations"

_ENDPOINT_FIELDS = ("type", "namespace", "name", "kind", "service", "dns_name", "ip")


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    types: Mapping[str, str]
    placeholder: Callable[[int], str]

    def params(self, count: int) -> str:
        return ", ".join(self.placeholder(i) for i in range(1, count + 1))


SQLITE = Dialect(
    "sqlite",
    {"text": "TEXT", "float": "REAL", "int": "INTEGER", "bool": "INTEGER", "json": "TEXT"},
    lambda _: "?",
)
POSTGRES = Dialect(
    "postgresql",
    {
        "text": "TEXT",
        "float": "DOUBLE PRECISION",
        "int": "BIGINT",
        "bool": "BOOLEAN",
        "json": "JSONB",
    },
    lambda index: f"${index}",
)

_V1_EDGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("edge_id", "text"),
    ("cluster", "text"),
    ("event", "text"),
    ("event_rank", "int"),
    *((f"client_{field}", "text") for field in _ENDPOINT_FIELDS),
    *((f"server_{field}", "text") for field in _ENDPOINT_FIELDS),
    ("ports", "json"),
    ("sources", "json"),
    ("first_seen", "float"),
    ("last_seen", "float"),
    ("count", "int"),
    ("self_edge", "bool"),
)
CLUSTER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("client_cluster", "text"),
    ("server_cluster", "text"),
)
"""Each side's cluster as a global edge names it (``Endpoint.cluster``); NULL on a
cluster's own edges, where the row's ``cluster`` applies to both sides (migration 3)."""
UDP_COLUMNS: tuple[tuple[str, str], ...] = (("udp_ports", "json"),)
"""The server's UDP ports (migration 4); NULL on rows written before it: none."""
HEALTH_COLUMNS: tuple[tuple[str, str], ...] = (("health", "json"), ("health_total", "json"))
"""How the edge's connections went lately and since it was new (migration 5); NULL when
no node's connection tracking reported on it, and on rows written before."""
EDGE_COLUMNS: tuple[tuple[str, str], ...] = (
    _V1_EDGE_COLUMNS + CLUSTER_COLUMNS + UDP_COLUMNS + HEALTH_COLUMNS
)
EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_key", "text"),
    ("edge_id", "text"),
    ("event", "text"),
    ("first_seen", "float"),
    ("last_seen", "float"),
    ("count", "int"),
    ("record", "json"),
)


def _table(dialect: Dialect, name: str, columns: tuple[tuple[str, str], ...], key: str) -> str:
    body = ",\n  ".join(
        f"{column} {dialect.types[kind]}{' NOT NULL' if column in (key, 'event') else ''}"
        for column, kind in columns
    )
    return f"CREATE TABLE {name} (\n  {body},\n  PRIMARY KEY ({key})\n)"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: Callable[[Dialect], list[str]]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "edges and their lifecycle history",
        lambda d: [
            _table(d, EDGES_TABLE, _V1_EDGE_COLUMNS, "edge_id"),
            _table(d, EVENTS_TABLE, EVENT_COLUMNS, "event_key"),
        ],
    ),
    Migration(
        2,
        "indexes for the map's filters and for an edge's history",
        lambda d: [
            f"CREATE INDEX {EDGES_TABLE}_client_ns ON {EDGES_TABLE} (client_namespace)",
            f"CREATE INDEX {EDGES_TABLE}_server_ns ON {EDGES_TABLE} (server_namespace)",
            f"CREATE INDEX {EDGES_TABLE}_last_seen ON {EDGES_TABLE} (last_seen)",
            f"CREATE INDEX {EVENTS_TABLE}_edge ON {EVENTS_TABLE} (edge_id, last_seen)",
        ],
    ),
    Migration(
        3,
        "each side's cluster, for global edges",
        lambda d: [
            f"ALTER TABLE {EDGES_TABLE} ADD COLUMN {column} {d.types[kind]}"
            for column, kind in CLUSTER_COLUMNS
        ],
    ),
    Migration(
        4,
        "the server's UDP ports",
        lambda d: [
            f"ALTER TABLE {EDGES_TABLE} ADD COLUMN {column} {d.types[kind]}"
            for column, kind in UDP_COLUMNS
        ],
    ),
    Migration(
        5,
        "how the edge's connections went",
        lambda d: [
            f"ALTER TABLE {EDGES_TABLE} ADD COLUMN {column} {d.types[kind]}"
            for column, kind in HEALTH_COLUMNS
        ],
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version


def migrations_table(dialect: Dialect) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version {dialect.types['int']} "
        f"PRIMARY KEY, description {dialect.types['text']} NOT NULL, "
        f"applied_at {dialect.types['float']} NOT NULL)"
    )


def record_migration(dialect: Dialect) -> str:
    return (
        f"INSERT INTO {MIGRATIONS_TABLE} (version, description, applied_at) "
        f"VALUES ({dialect.params(3)})"
    )


def pending(applied: set[int]) -> list[Migration]:
    """The migrations still to run, in order; refuses a database from newer code."""
    newer = {version for version in applied if version > LATEST_VERSION}
    if newer:
        raise ValueError(
            f"the database has schema version {max(newer)}; this callmap knows up to "
            f"{LATEST_VERSION}: upgrade callmap"
        )
    return [m for m in MIGRATIONS if m.version not in applied]


def upsert_edge(dialect: Dialect) -> str:
    """Insert or replace an edge's row, never with an older state."""
    names = [column for column, _ in EDGE_COLUMNS]
    updates = ", ".join(f"{column} = excluded.{column}" for column in names[1:])
    return (
        f"INSERT INTO {EDGES_TABLE} ({', '.join(names)}) VALUES ({dialect.params(len(names))}) "
        f"ON CONFLICT (edge_id) DO UPDATE SET {updates} "
        f"WHERE (excluded.last_seen, excluded.event_rank, excluded.count) >= "
        f"({EDGES_TABLE}.last_seen, {EDGES_TABLE}.event_rank, {EDGES_TABLE}.count)"
    )


def insert_event(dialect: Dialect) -> str:
    names = [column for column, _ in EVENT_COLUMNS]
    return (
        f"INSERT INTO {EVENTS_TABLE} ({', '.join(names)}) VALUES ({dialect.params(len(names))}) "
        "ON CONFLICT (event_key) DO NOTHING"
    )


def delete_edge(dialect: Dialect) -> str:
    return f"DELETE FROM {EDGES_TABLE} WHERE edge_id = {dialect.placeholder(1)}"


def select_edges() -> str:
    names = ", ".join(column for column, _ in EDGE_COLUMNS)
    return f"SELECT {names} FROM {EDGES_TABLE} ORDER BY edge_id"


def _endpoint_values(endpoint: Endpoint) -> list[str | None]:
    return [getattr(endpoint, field) for field in _ENDPOINT_FIELDS]


def edge_row(edge: Edge, dialect: Dialect) -> tuple[Any, ...]:
    """The ``callmap_edges`` row of an edge, in :data:`EDGE_COLUMNS` order."""
    flag: bool | int = edge.self_edge if dialect is POSTGRES else int(edge.self_edge)
    return (
        edge.edge_id,
        edge.cluster,
        edge.event,
        EVENT_RANK.get(edge.event, 0),
        *_endpoint_values(edge.client),
        *_endpoint_values(edge.server),
        json.dumps(list(edge.ports)),
        json.dumps(list(edge.sources)),
        edge.first_seen,
        edge.last_seen,
        edge.count,
        flag,
        edge.client.cluster,
        edge.server.cluster,
        json.dumps(list(edge.udp_ports)),
        _health_cell(edge.health),
        _health_cell(edge.health_total),
    )


def _health_cell(health: FlowHealth | None) -> str | None:
    return None if health is None else msgspec.json.encode(health).decode()


def _health_of(cell: str | None) -> FlowHealth | None:
    return None if cell is None else msgspec.json.decode(cell, type=FlowHealth)


def event_row(edge: Edge) -> tuple[Any, ...]:
    """The ``callmap_edge_events`` row of one lifecycle event."""
    record = msgspec.json.encode(edge).decode()
    return (
        event_key(edge),
        edge.edge_id,
        edge.event,
        edge.first_seen,
        edge.last_seen,
        edge.count,
        record,
    )


def _endpoint(values: Mapping[str, Any], side: str) -> Endpoint:
    fields = {field: values[f"{side}_{field}"] for field in (*_ENDPOINT_FIELDS, "cluster")}
    return Endpoint(**{k: v for k, v in fields.items() if v is not None})


def edge_from_row(values: Mapping[str, Any]) -> Edge:
    """An edge back from a ``callmap_edges`` row (a mapping by column name)."""
    return Edge(
        edge_id=values["edge_id"],
        event=values["event"],
        cluster=values["cluster"],
        client=_endpoint(values, "client"),
        server=_endpoint(values, "server"),
        ports=tuple(json.loads(values["ports"])),
        udp_ports=tuple(json.loads(values["udp_ports"] or "[]")),
        sources=tuple(json.loads(values["sources"])),
        first_seen=values["first_seen"],
        last_seen=values["last_seen"],
        count=values["count"],
        self_edge=bool(values["self_edge"]),
        health=_health_of(values["health"]),
        health_total=_health_of(values["health_total"]),
    )
