"""How the stream app runs: one typed object, built once from the worker's options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from callmap.wire.topics import MAX_BATCH_BYTES
from streams.caps import Caps
from streams.combine import DEFAULT_COMBINE_INTERVAL
from streams.edgelog import DEFAULT_COMMIT_INTERVAL, DEFAULT_STALL_LIMIT
from streams.edges import DEFAULT_REFRESH_INTERVAL, DEFAULT_TTL
from streams.resolvestage import ResolveSettings


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """How the stream app runs."""

    app_id: str = "callmap-streams"
    """Consumer group and prefix of Faust's own topics; one per pipeline."""
    resolve: ResolveSettings = field(default_factory=ResolveSettings)
    """How events are resolved."""
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL
    """An edge seen again is re-announced at most this often (seconds)."""
    ttl: float = DEFAULT_TTL
    """An edge unseen for this long is announced ``expired`` (seconds)."""
    tick_interval: float = 10.0
    """How often owners check their edges for refresh and expiry (seconds)."""
    sighting_partitions: int = 12
    """Partitions of the sightings topic; the changelog has as many."""
    replication: int = 1
    """Replicas of the topics Faust creates, as the sightings topic has them."""
    session_timeout: float = 30.0
    """Seconds after which a silent worker's partitions go to the others."""
    combine_interval: float = DEFAULT_COMBINE_INTERVAL
    """Repeats of a known edge go to its owner at most this often (seconds; 0: at once)."""
    data_dir: Path = Path(".")
    """Where Faust keeps its ``<app id>-data`` directory."""
    commit_interval: float = DEFAULT_COMMIT_INTERVAL
    """Seconds the merge stage's transactions stay open (announcements wait as long)."""
    stall_limit: float = DEFAULT_STALL_LIMIT
    """Seconds an edge log write or commit may take before ``/healthz`` says the worker
    is stuck (the chart's liveness probe then restarts it)."""
    caps: Caps = field(default_factory=Caps)
    """What one message, and one client, may bring in."""
    max_message_bytes: int = MAX_BATCH_BYTES
    """Sightings and pending messages are split to stay within this many bytes, under
    the broker's message limit (Kafka's default ``message.max.bytes`` is about 1 MB)."""
