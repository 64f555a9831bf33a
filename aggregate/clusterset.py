"""Which clusters can reach each other's addresses, and how MCS names are read. Pure.

Pod and service ranges of clusters that are not peered may overlap, so an IP
seen in one cluster is looked up only in the clusters its caller can reach:
its own and its declared peers. Peering is symmetric, and clusters whose
ranges overlap cannot be peers (an address would name two pods at once).

The declaration is the ``clusters:`` list of a lab topology, so one file
serves both::

    clusters:
      - {name: east, peers: [west]}
      - {name: west}
      - {name: north, overlap_with: [east]}

MCS API names (KEP-1645) under the clusterset domain (``clusterset.local``):
``<svc>.<ns>.svc.<domain>`` is the service exported by every cluster that
has it, ``<hostname>.<cluster>.<svc>.<ns>.svc.<domain>`` one pod of a headless
exported service in one cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from callmap.errors import CallmapError

DEFAULT_CLUSTERSET_DOMAIN = "clusterset.local"


class ClusterSetError(CallmapError):
    """A clusterset declaration that cannot be right."""


@dataclass(frozen=True, slots=True)
class ClusterSet:
    """Declared peerings between clusters; a cluster not declared has no peers."""

    peers: Mapping[str, frozenset[str]] = field(default_factory=dict)
    domain: str = DEFAULT_CLUSTERSET_DOMAIN

    def reachable(self, cluster: str) -> tuple[str, ...]:
        """The clusters whose pod and service IPs a pod of ``cluster`` reaches: itself first."""
        return (cluster, *sorted(self.peers.get(cluster, ())))


def clusterset_from_document(
    document: Mapping[str, Any], domain: str = DEFAULT_CLUSTERSET_DOMAIN
) -> ClusterSet:
    """The clusterset a ``clusters:`` list declares (see the module docstring)."""
    entries = document.get("clusters")
    if not isinstance(entries, list):
        raise ClusterSetError("a clusterset file needs a 'clusters:' list")
    names: list[str] = []
    peers: dict[str, set[str]] = {}
    overlaps: dict[str, set[str]] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ClusterSetError(f"clusters[{index}] needs a name")
        name = entry["name"]
        if name in names:
            raise ClusterSetError(f"cluster {name!r} is declared twice")
        names.append(name)
        peers.setdefault(name, set())
        overlaps.setdefault(name, set())
        for key, relation in (("peers", peers), ("overlap_with", overlaps)):
            others = entry.get(key, [])
            if not isinstance(others, list) or not all(isinstance(o, str) for o in others):
                raise ClusterSetError(f"cluster {name!r}: {key} must be a list of names")
            for other in others:
                if other == name:
                    raise ClusterSetError(f"cluster {name!r} lists itself in {key}")
                relation.setdefault(name, set()).add(other)
                relation.setdefault(other, set()).add(name)  # both relations are symmetric
    unknown = (set(peers) | set(overlaps)) - set(names)
    if unknown:
        raise ClusterSetError(f"undeclared clusters named as peers: {', '.join(sorted(unknown))}")
    for name in names:
        clash = peers[name] & overlaps[name]
        if clash:
            raise ClusterSetError(
                f"cluster {name!r} overlaps {', '.join(sorted(clash))}: overlapping clusters "
                "cannot be peers"
            )
    return ClusterSet({n: frozenset(p) for n, p in peers.items()}, domain)


def clusterset_from_groups(
    groups: Iterable[Iterable[str]], domain: str = DEFAULT_CLUSTERSET_DOMAIN
) -> ClusterSet:
    """The clusterset where the clusters of each group are all peers of each other."""
    peers: dict[str, set[str]] = {}
    for group in groups:
        members = {name for name in group if name}
        for name in members:
            peers.setdefault(name, set()).update(members - {name})
    return ClusterSet({n: frozenset(p) for n, p in peers.items()}, domain)


# --- MCS names ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterSetService:
    """``<service>.<namespace>.svc.<clusterset domain>``."""

    namespace: str
    service: str


@dataclass(frozen=True, slots=True)
class ClusterSetPod:
    """``<hostname>.<cluster>.<service>.<namespace>.svc.<clusterset domain>``."""

    namespace: str
    service: str
    cluster: str
    hostname: str


def classify_clusterset_name(
    name: str, domain: str = DEFAULT_CLUSTERSET_DOMAIN
) -> ClusterSetService | ClusterSetPod | None:
    """What an MCS name names; None for any other name."""
    suffix = "." + domain
    if not name.endswith(suffix):
        return None
    labels = name[: -len(suffix)].split(".")
    if any(not label for label in labels) or labels[-1] != "svc":
        return None
    if len(labels) == 3:
        return ClusterSetService(namespace=labels[1], service=labels[0])
    if len(labels) == 5:
        return ClusterSetPod(
            namespace=labels[3], service=labels[2], cluster=labels[1], hostname=labels[0]
        )
    return None
