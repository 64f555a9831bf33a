"""JSON encoding and decoding of wire records, and batching of raw records.

Decoding is strict about what matters and lenient about what does not: unknown
fields are ignored and optional fields filled with their defaults (so older
consumers read newer producers), while a missing required field, a wrong type,
non-JSON bytes or another schema version raise :class:`WireDecodeError` naming
the topic and the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import cache
from itertools import islice
from operator import attrgetter
from typing import Any, NamedTuple, TypeVar

import msgspec

from callmap.errors import WireDecodeError
from callmap.wire.records import (
    CaptureStats,
    ClusterInfo,
    DeadLetter,
    DnsAnswer,
    DnsAnswerBatch,
    Edge,
    EdgeSighting,
    NodeIdentity,
    PendingBatch,
    PodIdentity,
    Record,
    ServiceIdentity,
    SightingBatch,
    SocketBatch,
    SocketObservation,
)
from callmap.wire.topics import (
    MAX_BATCH_BYTES,
    NODES,
    PODS,
    SERVICES,
    TopicSpec,
    identity_key,
)

R = TypeVar("R", bound=Record)

_encoder = msgspec.json.Encoder()

# msgspec reports where validation failed as a JSON path: "... - at `$.a[0].b`".
_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`")


def encode(record: Record) -> bytes:
    """The JSON bytes of a record, as they go on the wire."""
    return _encoder.encode(record)


@cache
def _decoder(record_type: type[Record]) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(record_type)


def decode(spec: TopicSpec, data: bytes) -> Record:
    """Decode a message value of ``spec``'s topic into its record type."""
    return decode_as(spec.record, data, topic=spec.name)


def decode_as(record_type: type[R], data: bytes, *, topic: str) -> R:
    """Decode ``data`` as ``record_type``; ``topic`` names the origin in errors."""
    try:
        record: R = _decoder(record_type).decode(data)
    except msgspec.ValidationError as exc:
        # Another version may differ in shape; say so rather than name a field.
        _check_raw_version(data, topic, record_type.version)
        raise WireDecodeError(topic, *_locate(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise WireDecodeError(topic, None, f"not JSON: {exc}") from None
    # msgspec raises these for bytes that are not UTF-8 where a key is expected, and for
    # nesting deeper than it recurses: bad input all the same, never a crash.
    except UnicodeDecodeError as exc:
        raise WireDecodeError(topic, None, f"not UTF-8: {exc}") from None
    except RecursionError:
        raise WireDecodeError(topic, None, "nested too deep") from None
    _check_version(record, topic, "v")
    # A batch's versions in one pass in C (a Python loop took a fifth of decoding a
    # batch); the record to blame is looked for only when one differs.
    if isinstance(record, DnsAnswerBatch | SocketBatch) and set(
        map(_version_of, record.records)
    ) - {record.version}:
        for index, inner in enumerate(record.records):
            _check_version(inner, topic, f"records[{index}].v")
    return record


_version_of = attrgetter("v")


def _check_version(record: Record, topic: str, field: str) -> None:
    if record.v != record.version:
        raise WireDecodeError(
            topic, field, f"schema version {record.v}, this callmap reads {record.version}"
        )


def _check_raw_version(data: bytes, topic: str, expected: int) -> None:
    """On the error path only: report a foreign version before any field."""
    try:
        value = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return  # not JSON as a whole: the typed decoder's message says more
    version = value.get("v") if isinstance(value, dict) else None
    if version is not None and version != expected:
        raise WireDecodeError(
            topic, "v", f"schema version {version!r}, this callmap reads {expected}"
        )


def _locate(message: str) -> tuple[str | None, str]:
    """Split a msgspec validation message into (field path, reason)."""
    match = _PATH.search(message)
    path = match.group("path") if match else ""
    reason = message[: match.start()] if match else message
    missing = _MISSING.match(reason)
    if missing:
        path = f"{path}.{missing.group('name')}" if path else missing.group("name")
    return (path or None), reason


def local_identity_key(record: PodIdentity | ServiceIdentity | NodeIdentity) -> str:
    """The key of an identity within its cluster: a pod UID, ``namespace/name`` of a
    service, or a node name."""
    if isinstance(record, PodIdentity):
        return record.uid
    if isinstance(record, ServiceIdentity):
        return f"{record.namespace}/{record.name}"
    return record.name


def message_key(record: Record) -> bytes | None:
    """The Kafka message key of a record, as its topic defines it."""
    match record:
        case DnsAnswerBatch() | SocketBatch() | CaptureStats() | DnsAnswer() | SocketObservation():
            return record.node.encode()
        case PodIdentity():
            return identity_key(PODS, record.cluster, local_identity_key(record))
        case ServiceIdentity():
            return identity_key(SERVICES, record.cluster, local_identity_key(record))
        case NodeIdentity():
            return identity_key(NODES, record.cluster, local_identity_key(record))
        case ClusterInfo():
            return record.cluster.encode()
        case Edge() | EdgeSighting():
            return record.edge_id.encode()
        case SightingBatch():
            return None
        case PendingBatch():
            return record.node.encode()
        case DeadLetter():
            return None
    raise TypeError(f"no key defined for {type(record).__name__}")


class BatchMessage(NamedTuple):
    """One encoded batch message and the number of records in it."""

    value: bytes
    records: int


def encode_batches(
    batch_type: type[DnsAnswerBatch] | type[SocketBatch],
    *,
    cluster: str,
    node: str,
    records: Iterable[msgspec.Struct],
    max_bytes: int = MAX_BATCH_BYTES,
) -> Iterator[BatchMessage]:
    """Encode one node's records as batch messages of at most ``max_bytes`` each: the
    batch type's records, or structs that encode as they do (the capture agent's
    window of DNS answers, :class:`capture.dnsfold.FoldedAnswer`).

    Each record is encoded once; batches are assembled from those bytes, so
    splitting costs no second encoding. A single record larger than
    ``max_bytes`` still goes out alone (the broker decides whether to take it).
    """
    envelope = _encoder.encode(batch_type(cluster=cluster, node=node, records=()))
    return _split(envelope, b'"records":[]', records, max_bytes)


def encode_sighting_batches(
    sightings: Iterable[EdgeSighting], max_bytes: int = MAX_BATCH_BYTES
) -> Iterator[BatchMessage]:
    """Sightings as :class:`SightingBatch` messages of at most ``max_bytes`` each."""
    envelope = _encoder.encode(SightingBatch(sightings=()))
    return _split(envelope, b'"sightings":[]', sightings, max_bytes)


def encode_pending_batches(
    pending: PendingBatch, max_bytes: int = MAX_BATCH_BYTES
) -> Iterator[BatchMessage]:
    """A pending batch as messages of at most ``max_bytes`` each: its DNS answers, then
    its sockets, each message with the same cluster, node and due time."""
    empty = msgspec.structs.replace(pending, dns=(), sockets=())
    envelope = _encoder.encode(empty)
    yield from _split(envelope, b'"dns":[]', pending.dns, max_bytes)
    yield from _split(envelope, b'"sockets":[]', pending.sockets, max_bytes)


_FIRST_CHUNK = 64
"""Records in a message's first chunk, before their sizes are known."""


def _split(
    envelope: bytes, empty_list: bytes, records: Iterable[Any], max_bytes: int
) -> Iterator[BatchMessage]:
    """Messages of ``envelope`` whose ``empty_list`` field holds the records, each
    message within ``max_bytes`` (a single larger record goes out alone).

    The records are encoded a chunk at a time, each chunk as one JSON list in
    one call: a list's elements are the records' own encodings joined by commas,
    so a message is its head, the chunks' insides and its tail. A record then
    costs its encoding and nothing else: 100,000 distinct DNS answers took 57 ms
    against 90 ms a record at a time, and encoding them as one list 66 ms
    (2026-12-07). A chunk holds about a sixteenth of a message, by the sizes
    seen so far; one that does not fit the room left is halved until its parts
    do, down to single records, so the messages are as full as one record at a
    time made them. The records are taken from ``records`` a chunk at a time,
    so an iterator that lets go of them (``callmap.lists.drained``) keeps only
    a chunk alive.
    """
    at = envelope.rindex(empty_list) + len(empty_list) - 1  # just before its "]"
    head, tail = envelope[:at], envelope[at:]
    budget = max_bytes - len(head) - len(tail)
    parts: list[bytes | memoryview] = []  # the message so far: insides, commas between
    size = count = 0  # its bytes between head and tail, and its records
    chunk = _FIRST_CHUNK
    source = iter(records)
    waiting: list[list[Any]] = []  # halves of a chunk still to place, next last
    while True:
        taken = waiting.pop() if waiting else list(islice(source, chunk))
        if not taken:
            break
        body = _encoder.encode(taken)
        inside = len(body) - 2
        too_large = (size + 1 if size else 0) + inside > budget
        if too_large and len(taken) > 1:  # its first half may fit
            half = len(taken) // 2
            waiting += (taken[half:], taken[:half])
            continue
        if too_large and size:  # one record, and no room left for it here
            yield _message(head, parts, tail, count)
            parts, size, count = [], 0, 0
        if parts:
            parts.append(b",")
            size += 1
        parts.append(memoryview(body)[1:-1])
        size += inside
        count += len(taken)
        chunk = max(1, budget // 16 * len(taken) // max(inside, 1))
    if parts:
        yield _message(head, parts, tail, count)


def _message(head: bytes, parts: list[bytes | memoryview], tail: bytes, count: int) -> BatchMessage:
    """``parts`` between ``head`` and ``tail``, joined in one allocation of the
    message's size."""
    return BatchMessage(b"".join((head, *parts, tail)), count)
