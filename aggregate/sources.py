"""Which cluster a topic at the hub belongs to. Pure.

Two layouts reach an aggregator:

- **mirrored**: MirrorMaker 2's default replication policy names a source
  cluster's topic ``<alias>.<topic>`` at the hub (``east.callmap.edges.v1``);
  the alias names the cluster, whatever its records say;
- **shared**: several clusters write the same ``callmap.edges.v1`` on one
  Kafka; each record's ``cluster`` names its cluster.

Aliases are single DNS-label-like words: MirrorMaker separates with a dot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from callmap.wire.topics import SHARED_TOPICS, TopicSpec, mirrored

_BY_NAME = {spec.name: spec for spec in SHARED_TOPICS}
_ALIAS = r"[A-Za-z0-9][A-Za-z0-9_-]*"

TOPIC_PATTERN = re.compile(
    rf"^(?:(?P<alias>{_ALIAS})\.)?(?P<topic>{'|'.join(re.escape(n) for n in _BY_NAME)})$"
)
"""Every topic an aggregator reads: a shared topic, bare or under one alias."""


@dataclass(frozen=True, slots=True)
class SourceTopic:
    """A topic at the hub: what it carries and whose it is."""

    name: str
    spec: TopicSpec
    alias: str | None
    """The cluster a mirrored topic came from; None for a shared topic."""

    def cluster_of(self, record_cluster: str) -> str:
        """The cluster a record of this topic belongs to."""
        return self.alias if self.alias is not None else record_cluster


def source_topic(name: str) -> SourceTopic | None:
    """The source topic ``name`` is, or None if an aggregator does not read it."""
    match = TOPIC_PATTERN.match(name)
    if match is None:
        return None
    return SourceTopic(name, _BY_NAME[match["topic"]], match["alias"])


def mirrored_name(alias: str, spec: TopicSpec) -> str:
    """The name MirrorMaker 2's default policy gives ``spec``'s topic of cluster ``alias``."""
    return mirrored(spec, alias).name
