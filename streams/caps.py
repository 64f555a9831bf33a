"""Bounds on what the stream app takes in, and what it says when one bites. Pure.

A message over the byte cap is not decoded, a raw or pending batch over the
record cap is not resolved: both go to the dead-letter topic as ``oversized``.
A client over its edge cap (:mod:`streams.combine`) is reported there as
``edge_cap``. So no single message, and no single pod, can grow a worker's
memory without bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from callmap.wire import DnsAnswerBatch, EdgeSighting, PendingBatch, Record, SocketBatch
from streams.combine import DEFAULT_MAX_EDGES_PER_CLIENT

R = TypeVar("R", bound=Record)
DEFAULT_MESSAGE_BYTES = 2 * 1024 * 1024
DEFAULT_BATCH_RECORDS = 50_000


@dataclass(frozen=True, slots=True)
class Caps:
    """What one message, and one client, may bring in."""

    message_bytes: int = DEFAULT_MESSAGE_BYTES
    """Bytes of one message on a topic the worker reads (capture sends at most
    ``MAX_BATCH_BYTES``; Kafka's default message limit is about 1 MB)."""
    batch_records: int = DEFAULT_BATCH_RECORDS
    """Records in one raw or pending batch."""
    edges_per_client: int = DEFAULT_MAX_EDGES_PER_CLIENT
    """Servers one client may reach within the edge TTL (0: no cap)."""


class Oversized(Exception):
    """A message over a cap: it goes to the dead-letter topic as ``oversized``."""


def over_bytes(size: int, caps: Caps) -> str | None:
    """Why a message of ``size`` bytes is refused, if it is."""
    if size > caps.message_bytes:
        return f"{size:,} bytes, over the cap of {caps.message_bytes:,}"
    return None


def over_records(record: Record, caps: Caps) -> str | None:
    """Why a decoded batch is refused, if it is."""
    if isinstance(record, PendingBatch):
        count = len(record.dns) + len(record.sockets)
    elif isinstance(record, DnsAnswerBatch | SocketBatch):
        count = len(record.records)
    else:
        return None
    if count > caps.batch_records:
        return f"{count:,} records, over the cap of {caps.batch_records:,}"
    return None


def within_caps(record: R, caps: Caps) -> R:
    """``record``, unless it is a batch over the record cap (:class:`Oversized`)."""
    problem = over_records(record, caps)
    if problem is not None:
        raise Oversized(problem)
    return record


def edge_cap_error(sighting: EdgeSighting, cap: int) -> str:
    """The dead letter's message for a client over its edge cap."""
    client = sighting.client
    who = "/".join(part for part in (client.namespace, client.name or client.ip) if part)
    return (
        f"client {who} in cluster {sighting.cluster} reached {cap:,} servers within the "
        f"edge TTL (--max-edges-per-client): its calls to further servers are not mapped "
        f"until some of those age out"
    )
