"""Where the map commands read edges from (``--from``), and identities for labels.

- ``kafka`` (default): the compacted edges topic, read from the start to the
  end offsets it has now; pod and service identities from their topics too.
  With ``--global``, the hub's global edges (``callmap.global-edges.v1``,
  written by ``callmap aggregate``, every endpoint carrying its cluster), and
  identities from the hub's shared topics and each cluster's mirrored ones
  (``<cluster>.callmap.pods.v1``), those that exist.
- ``sqlite:///PATH`` (``sqlite:////abs/path`` for an absolute path, as
  SQLAlchemy spells it), ``postgresql://...``: what a database sink stored.
- ``jsonl:PATH``: a JSON Lines sink's directory (up to what its journal says
  was committed) or any file of edge lines.

Every source yields the current state of each edge (lifecycle merged, see
:mod:`sinks.lifecycle`); messages that do not decode are reported, not fatal.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from callmap.broker import (
    admin_client,
    make_consumer,
    map_kafka_errors,
    read_to_end,
    topic_partitions,
)
from callmap.config import KafkaSettings
from callmap.errors import ConfigError, PermanentError, TemporaryError, WireDecodeError
from callmap.wire import (
    EDGES,
    GLOBAL_EDGES,
    PODS,
    SERVICES,
    Edge,
    PodIdentity,
    ServiceIdentity,
    TopicSpec,
    decode,
    decode_as,
)
from callmap.wire.topics import mirrored
from sinks.changes import Change
from sinks.endpoints import clusters_in
from sinks.lifecycle import EdgeBook


@dataclass(slots=True)
class MapData:
    """Edges (current state, expired included) and, when known, identities."""

    edges: list[Edge]
    pods: list[PodIdentity] | None = None
    services: list[ServiceIdentity] | None = None
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Source:
    kind: str
    """``kafka``, ``sqlite``, ``postgresql`` or ``jsonl``."""
    location: str
    global_edges: bool = False
    """``kafka``: the hub's global edges rather than a cluster's own (``--global``)."""


def parse_source(text: str, global_edges: bool = False) -> Source:
    if global_edges and text != "kafka":
        raise ConfigError(
            f"--global reads the global edges topic from Kafka, not --from {text!r} "
            "(a sink's store holds global edges when its sink read them with --global)"
        )
    if text == "kafka":
        return Source("kafka", "", global_edges)
    if text.startswith("sqlite:///"):
        return Source("sqlite", text[len("sqlite:///") :])
    if text.startswith(("postgresql://", "postgres://")):
        return Source("postgresql", text)
    if text.startswith("jsonl:") and len(text) > len("jsonl:"):
        return Source("jsonl", text[len("jsonl:") :])
    raise ConfigError(
        f"--from {text!r}: expected kafka, sqlite:///PATH, postgresql://... or jsonl:PATH"
    )


async def read_compacted(
    kafka: KafkaSettings, spec: TopicSpec, timeout: float = 60.0
) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of a topic from the start to its end offsets at call time."""
    partitions = await topic_partitions(kafka, [spec.name])  # PermanentError if it is missing
    consumer = make_consumer(kafka)
    with map_kafka_errors(f"read {spec.name}"):
        await consumer.start()
    try:
        with map_kafka_errors(f"read {spec.name}"):
            async with asyncio.timeout(timeout):
                return [(m.key, m.value) async for m in read_to_end(consumer, partitions)]
    except TimeoutError:
        raise TemporaryError(f"read {spec.name}: not at its end after {timeout:.0f}s") from None
    finally:
        await consumer.stop()


def _latest(
    records: list[tuple[bytes | None, bytes | None]], spec: TopicSpec, problems: list[str]
) -> Iterator[object]:
    """The latest decodable value per key (tombstones delete)."""
    latest: dict[bytes | None, object] = {}
    for key, value in records:
        if value is None:
            latest.pop(key, None)
            continue
        try:
            latest[key] = decode(spec, value)
        except WireDecodeError as exc:
            problems.append(str(exc))
    return iter(latest.values())


async def existing_topics(kafka: KafkaSettings) -> set[str]:
    """The names of every topic the brokers hold."""
    async with admin_client(kafka) as admin:
        with map_kafka_errors("list topics"):
            return set(await admin.list_topics())


async def _hub_identities(
    kafka: KafkaSettings, clusters: set[str], problems: list[str]
) -> tuple[list[PodIdentity], list[ServiceIdentity]]:
    """Pods and services at a hub: shared topics, and each cluster's mirrored ones.

    A mirrored topic's records belong to the cluster its name carries,
    whatever they say (as the aggregator reads them).
    """
    names = await existing_topics(kafka)
    pods: list[PodIdentity] = []
    services: list[ServiceIdentity] = []
    for cluster in [None, *sorted(clusters)]:
        for base in (PODS, SERVICES):
            spec = base if cluster is None else mirrored(base, cluster)
            if spec.name not in names:
                continue
            for record in _latest(await read_compacted(kafka, spec), spec, problems):
                if isinstance(record, PodIdentity | ServiceIdentity) and cluster is not None:
                    record = msgspec.structs.replace(record, cluster=cluster)
                if isinstance(record, PodIdentity):
                    pods.append(record)
                elif isinstance(record, ServiceIdentity):
                    services.append(record)
    return pods, services


async def read_kafka(
    kafka: KafkaSettings,
    *,
    identities: bool = True,
    edges_topic: TopicSpec = EDGES,
    pods_topic: TopicSpec = PODS,
    services_topic: TopicSpec = SERVICES,
) -> MapData:
    """The map from the edges topic, and identities from the pods and services topics."""
    problems: list[str] = []
    book = EdgeBook()
    for key, value in await read_compacted(kafka, edges_topic):
        if value is None:
            if key is not None:
                book.apply(Change(key.decode(errors="replace")))
            continue
        try:
            edge = decode(edges_topic, value)
        except WireDecodeError as exc:
            problems.append(str(exc))
            continue
        assert isinstance(edge, Edge)
        book.apply(Change.of(edge))
    data = MapData(book.edges(), problems=problems)
    if identities:
        global_edges = edges_topic.name == GLOBAL_EDGES.name
        data.pods, data.services = await read_identities(
            kafka, global_edges, clusters_in(data.edges), problems, pods_topic, services_topic
        )
    return data


async def read_identities(
    kafka: KafkaSettings,
    global_edges: bool,
    clusters: set[str],
    problems: list[str],
    pods_topic: TopicSpec = PODS,
    services_topic: TopicSpec = SERVICES,
) -> tuple[list[PodIdentity], list[ServiceIdentity]]:
    """Pods and services: a cluster's topics, or at a hub (``global_edges``) the shared
    topics and the mirrored ones of ``clusters``."""
    if global_edges:
        return await _hub_identities(kafka, clusters, problems)
    pods = _latest(await read_compacted(kafka, pods_topic), pods_topic, problems)
    services = _latest(await read_compacted(kafka, services_topic), services_topic, problems)
    return (
        [pod for pod in pods if isinstance(pod, PodIdentity)],
        [service for service in services if isinstance(service, ServiceIdentity)],
    )


_LINE_FILE = re.compile(r"(?P<prefix>.+)-(?P<number>\d{6,})\.jsonl")


def _journaled_files(directory: Path) -> list[tuple[Path, int | None]]:
    """The files of a JSON Lines sink and how much of each was committed."""
    files: list[tuple[Path, int | None]] = []
    journals = [directory / ".edges.journal.json"]  # the jsonl sink's own files first
    if not journals[0].exists():
        journals = sorted(directory.glob(".*.journal.json"))
    for journal in journals:
        prefix = journal.name[1 : -len(".journal.json")]
        state = json.loads(journal.read_text()).get("state", {})
        sequence, size = int(state.get("sequence", 0)), int(state.get("size", 0))
        for path in sorted(directory.glob(f"{prefix}-*.jsonl")):
            match = _LINE_FILE.fullmatch(path.name)
            if match and match["prefix"] == prefix:
                number = int(match["number"])
                if number < sequence:
                    files.append((path, None))
                elif number == sequence:
                    files.append((path, size))
    return files or [(path, None) for path in sorted(directory.glob("*.jsonl"))]


def read_jsonl(path: Path) -> MapData:
    """The map from JSON Lines of edges (a sink's directory, or one file)."""
    if not path.exists():
        raise PermanentError(f"no such file or directory: {path}")
    files = _journaled_files(path) if path.is_dir() else [(path, None)]
    book, problems = EdgeBook(), []
    for file, limit in files:
        data = file.read_bytes()
        data = data if limit is None else data[:limit]
        for number, line in enumerate(data.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                book.apply(Change.of(decode_as(Edge, line, topic=f"{file}:{number}")))
            except WireDecodeError as exc:
                tombstone = _tombstone(line)
                if tombstone is None:
                    problems.append(str(exc))
                else:
                    book.apply(Change(tombstone))
    return MapData(book.edges(), problems=problems)


def _tombstone(line: bytes) -> str | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if isinstance(value, dict) and value.get("event") == "deleted":
        edge_id = value.get("edge_id")
        return edge_id if isinstance(edge_id, str) else None
    return None


async def load_map(source: Source, kafka: KafkaSettings, *, identities: bool = True) -> MapData:
    """Read the map from ``source``; identities only come with ``kafka``."""
    if source.kind == "kafka":
        topic = GLOBAL_EDGES if source.global_edges else EDGES
        return await read_kafka(kafka, identities=identities, edges_topic=topic)
    if source.kind == "sqlite":
        from sinks.service.destinations.sqlite import load_edges as load_sqlite

        return MapData(await load_sqlite(Path(source.location)))
    if source.kind == "postgresql":
        from sinks.service.destinations.postgres import load_edges as load_postgres

        return MapData(await load_postgres(source.location))
    return await asyncio.to_thread(read_jsonl, Path(source.location))
