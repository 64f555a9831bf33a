"""The Kafka ACLs each callmap component needs, and nothing more. Pure data.

One principal per component: a capture agent may write the raw topics and
nothing else, a sink may read the edges and write dead letters, and so on.
``callmap topics acls`` prints them as ``kafka-acls.sh`` commands for an
operator; the tests grant them on a broker that enforces ACLs and check that
each component runs with its own, and that a capture principal cannot write
edges (docs/deploy.md, "Kafka ACLs").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from callmap.wire.topics import (
    CLUSTERS,
    DLQ,
    DNS,
    EDGES,
    GLOBAL_EDGES,
    IDENTITY_TOPICS,
    SHARED_TOPICS,
    SOCKETS,
    STATS,
    TopicSpec,
    mirrored,
)

COMPONENTS = ("capture", "watch", "streams", "sink", "map", "topics", "aggregate")
AGGREGATE_GROUP = "callmap-aggregate"
"""``callmap aggregate``'s consumer group unless ``--group`` says otherwise."""
TOPIC_PREFIX = "callmap."
"""Every topic of the wire contract starts so."""


@dataclass(frozen=True, slots=True, order=True)
class Acl:
    """Allow ``operation`` on a resource, for the component's principal from any host."""

    resource: str
    """``TOPIC``, ``GROUP``, ``TRANSACTIONAL_ID`` or ``CLUSTER`` (Kafka's names)."""
    pattern: str
    """``LITERAL`` or ``PREFIXED``."""
    name: str
    operation: str
    """``READ``, ``WRITE``, ``CREATE``, ``DESCRIBE``, ``DESCRIBE_CONFIGS``..."""


def _topics(specs: Iterable[TopicSpec], *operations: str) -> list[Acl]:
    return [Acl("TOPIC", "LITERAL", spec.name, op) for spec in specs for op in operations]


def _making_sure_topics_exist() -> list[Acl]:
    """What ``ensure_topics`` needs: list, describe and create callmap's topics."""
    return [
        Acl("CLUSTER", "LITERAL", "kafka-cluster", "DESCRIBE"),
        *(
            Acl("TOPIC", "PREFIXED", TOPIC_PREFIX, op)
            for op in ("CREATE", "DESCRIBE", "DESCRIBE_CONFIGS")
        ),
    ]


def component_acls(
    component: str,
    *,
    app_id: str = "callmap-streams",
    cluster: str = "default",
    aliases: Iterable[str] = (),
    group: str = AGGREGATE_GROUP,
) -> list[Acl]:
    """The ACLs of one component (one of :data:`COMPONENTS`), sorted.

    ``app_id`` is the stream app's (its own topics, group and transactional ids
    start with it), ``cluster`` the watcher's (its transactional id names it).
    An aggregator reads the shared topics at its hub and, for each of
    ``aliases``, the copies MirrorMaker 2 makes of that cluster's
    (``east.callmap.edges.v1``); ``group`` is its consumer group.
    A sink's consumer group is ``callmap-sink-<kind>`` unless ``--group`` says
    otherwise; the OCSF sink writing to a topic needs WRITE on that topic too.
    The map readers (``map``: ``list``, ``export``, ``serve``, ``mcp``, ``metrics``
    from Kafka) read the edges, the hub's global edges and the identities (at a hub,
    each of ``aliases``' mirrored identities too), and use no consumer group.
    """
    if component == "capture":
        acls = _topics((DNS, SOCKETS, STATS), "WRITE", "DESCRIBE")
    elif component == "watch":
        acls = [
            *_topics((*IDENTITY_TOPICS, CLUSTERS), "READ", "WRITE", "DESCRIBE"),
            *_making_sure_topics_exist(),
            Acl("TRANSACTIONAL_ID", "LITERAL", f"callmap-watch-{cluster}", "WRITE"),
            Acl("TRANSACTIONAL_ID", "LITERAL", f"callmap-watch-{cluster}", "DESCRIBE"),
        ]
    elif component == "streams":
        acls = [
            *_topics((DNS, SOCKETS, STATS, *IDENTITY_TOPICS), "READ", "DESCRIBE"),
            *_topics((EDGES, DLQ), "WRITE", "DESCRIBE"),
            *_making_sure_topics_exist(),
            *(
                Acl("TOPIC", "PREFIXED", app_id, op)
                for op in ("CREATE", "READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS")
            ),
            Acl("GROUP", "PREFIXED", app_id, "READ"),
            Acl("TRANSACTIONAL_ID", "PREFIXED", f"{app_id}-merge-", "WRITE"),
            Acl("TRANSACTIONAL_ID", "PREFIXED", f"{app_id}-merge-", "DESCRIBE"),
        ]
    elif component == "sink":
        acls = [
            *_topics((EDGES,), "READ", "DESCRIBE"),
            *_topics((DLQ,), "WRITE", "DESCRIBE"),
            Acl("GROUP", "PREFIXED", "callmap-sink-", "READ"),
        ]
    elif component == "map":  # list, export, visualize, serve, mcp, metrics: readers only
        mirrors = [mirrored(spec, alias) for alias in aliases for spec in IDENTITY_TOPICS]
        acls = _topics([EDGES, GLOBAL_EDGES, *IDENTITY_TOPICS, *mirrors], "READ", "DESCRIBE")
    elif component == "topics":  # the chart's Job: `callmap topics create`
        acls = _making_sure_topics_exist()
    elif component == "aggregate":
        sources = [*SHARED_TOPICS, *(mirrored(s, a) for a in aliases for s in SHARED_TOPICS)]
        acls = [
            *_topics(sources, "READ", "DESCRIBE"),
            *_topics((GLOBAL_EDGES,), "READ", "WRITE", "DESCRIBE"),  # it reads back its own
            *_making_sure_topics_exist(),
            Acl("GROUP", "LITERAL", group, "READ"),
        ]
    else:
        raise ValueError(f"no such component: {component} (one of {', '.join(COMPONENTS)})")
    return sorted(set(acls))


def kafka_acls_command(acl: Acl, principal: str) -> str:
    """The ``kafka-acls.sh`` line that grants ``acl`` to ``principal``."""
    resource = {
        "TOPIC": f"--topic {acl.name}",
        "GROUP": f"--group {acl.name}",
        "TRANSACTIONAL_ID": f"--transactional-id {acl.name}",
        "CLUSTER": "--cluster",
    }[acl.resource]
    operation = "".join(word.title() for word in acl.operation.split("_"))
    return (
        f"kafka-acls.sh --bootstrap-server $BOOTSTRAP --command-config admin.properties "
        f"--add --allow-principal {principal} --operation {operation} {resource} "
        f"--resource-pattern-type {acl.pattern.lower()}"
    )
