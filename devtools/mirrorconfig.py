"""MirrorMaker 2's configuration for callmap's topics: text in, text out, no I/O.

One dedicated-mode MirrorMaker copies each source cluster's shared callmap
topics (:data:`callmap.wire.topics.SHARED_TOPICS`) to a hub under the
default replication policy, so that the hub holds ``<alias>.<topic>``, which
``callmap aggregate`` reads. The settings suit single-broker development
clusters: one replica everywhere, and short refresh intervals so that a new
topic is mirrored within seconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from callmap.wire.topics import SHARED_TOPICS

SHARED_TOPICS_PATTERN = "|".join(re.escape(spec.name) for spec in SHARED_TOPICS)
"""The topics every flow copies: a cluster's edges, identities and heartbeats."""

REFRESH_SECONDS = 5
"""How often MirrorMaker looks for new topics and topic configs (its default is 10 min)."""

# MirrorMaker prefixes remote topics with the alias and a dot, and reads
# ``alias.setting`` and ``a->b.setting`` keys: an alias is one plain word.
_ALIAS = re.compile(r"[A-Za-z0-9_-]+")

# Every internal topic MirrorMaker and its Connect workers create.
_REPLICATION_FACTORS = (
    "replication.factor",
    "checkpoints.topic.replication.factor",
    "heartbeats.topic.replication.factor",
    "offset-syncs.topic.replication.factor",
    "offset.storage.replication.factor",
    "status.storage.replication.factor",
    "config.storage.replication.factor",
)


def mirror_properties(
    sources: Mapping[str, str],
    hub: tuple[str, str],
    *,
    exactly_once: bool = False,
    rest_port: int | None = None,
) -> str:
    """MirrorMaker 2's properties file: every source cluster's shared topics to the hub.

    ``sources`` maps each source alias to its bootstrap address; ``hub`` is
    (alias, bootstrap). Topic configs are copied (compaction reaches the hub);
    no consumer-offset checkpoints or group offset syncs (callmap's readers
    commit no offsets at the hub). ``exactly_once`` makes the writes to the
    hub transactional (Kafka 3.5+ in dedicated mode): it needs MirrorMaker's
    internal REST server, on ``127.0.0.1:rest_port``, and readers at the hub
    see each record once only with ``isolation.level=read_committed``.
    """
    hub_alias, hub_bootstrap = hub
    for alias in (*sources, hub_alias):
        if not _ALIAS.fullmatch(alias):
            raise ValueError(f"a cluster alias is one word of letters, digits, - or _: {alias!r}")
    if hub_alias in sources:
        raise ValueError(f"the hub alias {hub_alias!r} is also a source")
    if not sources:
        raise ValueError("MirrorMaker needs at least one source cluster")
    lines = [
        f"clusters = {', '.join([*sources, hub_alias])}",
        f"{hub_alias}.bootstrap.servers = {hub_bootstrap}",
    ]
    for alias, bootstrap in sources.items():
        lines += [
            f"{alias}.bootstrap.servers = {bootstrap}",
            f"{alias}->{hub_alias}.enabled = true",
            f"{alias}->{hub_alias}.topics = {SHARED_TOPICS_PATTERN}",
        ]
    lines += [f"{name} = 1" for name in _REPLICATION_FACTORS]
    lines += [
        "sync.topic.configs.enabled = true",
        f"sync.topic.configs.interval.seconds = {REFRESH_SECONDS}",
        f"refresh.topics.interval.seconds = {REFRESH_SECONDS}",
        f"refresh.groups.interval.seconds = {REFRESH_SECONDS}",
        "sync.topic.acls.enabled = false",
        "emit.checkpoints.enabled = false",
        "sync.group.offsets.enabled = false",
        "emit.heartbeats.enabled = true",  # <alias>.heartbeats at the hub: the flow is alive
    ]
    if exactly_once:
        if rest_port is None:
            raise ValueError("exactly-once needs MirrorMaker's internal REST server: a port")
        lines += [
            f"{hub_alias}.exactly.once.source.support = enabled",
            "dedicated.mode.enable.internal.rest = true",
            f"listeners = http://127.0.0.1:{rest_port}",
        ]
        # Never copy a source's aborted transactions (callmap's stream app writes in them).
        lines += [f"{alias}.consumer.isolation.level = read_committed" for alias in sources]
    return "\n".join(lines) + "\n"


def mirror_flows(properties: str) -> list[tuple[str, str]]:
    """The (source, target) flows a properties file enables, in file order."""
    flows = []
    for line in properties.splitlines():
        key, _, value = line.partition("=")
        source, arrow, rest = key.strip().partition("->")
        target, dot, setting = rest.partition(".")
        if arrow and dot and setting == "enabled" and value.strip() == "true":
            flows.append((source, target))
    return flows
