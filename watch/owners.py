"""Which workload a pod belongs to: its ownerReferences, followed to the root.

Pod → ReplicaSet → Deployment, Pod → Job → CronJob, StatefulSet, DaemonSet:
the built-in controllers are followed through an :class:`OwnerCache` of
controllers fetched so far; any other owner kind (an operator's custom
resource, Argo's Rollout, ...) is the workload by its kind and name, and so
is an owner that no longer exists. A pod without an owner is its own workload
(kind ``Pod``), and so is a static pod (its mirror is owned by its Node). The
``callmap.io/workload`` annotation overrides the name, never the kind.

:func:`resolve` is pure: when it needs an owner the cache does not hold, it
returns :class:`Missing`, the caller fetches that owner and asks again. So
owners are fetched lazily, one at a time, and each once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from callmap.wire import WorkloadRef
from watch.interning import Shared
from watch.objects import OwnerRef, SlimOwner, SlimPod

# (API group, kind) of the controllers whose own owners are followed.
FOLLOWED: Final = frozenset(
    {
        ("apps", "ReplicaSet"),
        ("apps", "Deployment"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("batch", "Job"),
        ("batch", "CronJob"),
    }
)
MAX_DEPTH = 8  # ownerReferences can form a cycle; a real chain is two or three long

Note = Literal["custom_kind", "owner_gone", "too_deep"]

_workloads: Shared[tuple[str, str], WorkloadRef] = Shared(limit=50_000)


def workload_ref(kind: str, name: str) -> WorkloadRef:
    """One WorkloadRef object per workload, however many pods it has."""
    return _workloads.get((kind, name), lambda: WorkloadRef(kind=kind, name=name))


@dataclass(frozen=True, slots=True)
class PodLink:
    """What resolving a pod's workload needs, kept for pods with followed owners."""

    namespace: str
    name: str
    owner: OwnerRef | None
    workload_name: str | None

    @classmethod
    def of(cls, pod: SlimPod) -> PodLink:
        return cls(pod.namespace, pod.name, pod.owner, pod.workload_name)


@dataclass(frozen=True, slots=True)
class Missing:
    """Resolution needs this owner, which the cache does not hold yet."""

    ref: OwnerRef
    namespace: str


@dataclass(frozen=True, slots=True)
class Resolved:
    workload: WorkloadRef
    note: Note | None = None
    """Why resolution stopped early, for the counters; None for a normal root."""


class OwnerCache:
    """Controllers fetched so far, by uid; an owner known to be gone maps to None."""

    def __init__(self) -> None:
        self._owners: dict[str, SlimOwner | None] = {}

    def __len__(self) -> int:
        return len(self._owners)

    def __contains__(self, uid: str) -> bool:
        return uid in self._owners

    def lookup(self, uid: str) -> SlimOwner | None:
        """The cached owner (None: known gone); KeyError when never fetched."""
        return self._owners[uid]

    def put(self, owner: SlimOwner) -> None:
        self._owners[owner.uid] = owner

    def mark_gone(self, uid: str) -> None:
        self._owners[uid] = None

    def evict(self, uid: str) -> None:
        self._owners.pop(uid, None)

    def uids(self) -> set[str]:
        return set(self._owners)

    def refresh(self, owner: SlimOwner) -> bool:
        """Take a newer version of a cached owner; True if its own owner changed.

        Owners nobody asked for are not added: the cache stays as small as the
        set of controllers that pods actually have.
        """
        if owner.uid not in self._owners:
            return False
        before = self._owners[owner.uid]
        self._owners[owner.uid] = owner
        return before is None or before.owner != owner.owner


def is_followed(ref: OwnerRef | None) -> bool:
    return ref is not None and (ref.group, ref.kind) in FOLLOWED


def resolve(link: PodLink, cache: OwnerCache) -> Resolved | Missing:
    """The pod's workload, or the owner that must be fetched first."""
    ref = link.owner
    if ref is None or (ref.group, ref.kind) == ("", "Node"):
        return _named("Pod", link.name, link.workload_name)
    note: Note | None = None
    for _ in range(MAX_DEPTH):
        if (ref.group, ref.kind) not in FOLLOWED:
            note = "custom_kind"
            break
        try:
            owner = cache.lookup(ref.uid)
        except KeyError:
            return Missing(ref, link.namespace)
        if owner is None:
            note = "owner_gone"
            break
        if owner.owner is None:
            break
        ref = owner.owner
    else:
        note = "too_deep"
    return _named(ref.kind, ref.name, link.workload_name, note)


def _named(kind: str, name: str, override: str | None, note: Note | None = None) -> Resolved:
    return Resolved(workload_ref(kind, override or name), note)
