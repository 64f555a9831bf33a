"""Owners fetched lazily and kept fresh: the I/O around :mod:`watch.owners`.

:class:`OwnerResolver` answers "which workload is this pod's?" from its cache
and fetches, one GET each, the controllers it has not seen yet (metadata
only). :class:`OwnerHandler` watches each controller kind and refreshes the
cached ones (never adding others): when a cached controller's own owner
changes (a ReplicaSet adopted by another Deployment), every pod whose chain
runs through the cache is resolved again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from callmap.counters import StageCounters
from callmap.wire import WorkloadRef
from watch.kubeclient import OWNERS, KubeApi, NotFound, Resource
from watch.objects import BadObject, OwnerRef, SlimOwner, slim_owner
from watch.owners import Missing, OwnerCache, PodLink, resolve
from watch.reflector import EventType

log = logging.getLogger(__name__)

Fetch = Callable[[OwnerRef, str], Awaitable[SlimOwner | None]]


def api_fetch(api: KubeApi) -> Fetch:
    """Fetch an owner with a GET of its metadata; None when it does not exist."""

    async def fetch(ref: OwnerRef, namespace: str) -> SlimOwner | None:
        resource = OWNERS[ref.group, ref.kind]
        try:
            return slim_owner(await api.get(resource, namespace, ref.name), ref.kind)
        except NotFound:
            return None

    return fetch


class OwnerResolver:
    """Pod → workload, through a cache of the controllers fetched so far."""

    def __init__(self, fetch: Fetch, counters: StageCounters) -> None:
        self.cache = OwnerCache()
        self._fetch = fetch
        self._counters = counters
        self._custom_kinds_seen: set[tuple[str, str]] = set()

    async def workload(self, link: PodLink) -> WorkloadRef:
        """The workload of the pod ``link`` describes; fetches missing owners first."""
        while True:
            result = resolve(link, self.cache)
            if not isinstance(result, Missing):
                break
            await self._load(result)
        if result.note is not None:
            self._counters.drop(result.note)
            if result.note == "custom_kind":
                self._note_custom(result.workload)
            else:
                log.debug("pod %s/%s: %s", link.namespace, link.name, result.note)
        return result.workload

    async def _load(self, missing: Missing) -> None:
        ref = missing.ref
        self._counters.seen += 1
        try:
            owner = await self._fetch(ref, missing.namespace)
        except BadObject as exc:
            log.warning("%s %s/%s: %s", ref.kind, missing.namespace, ref.name, exc)
            self._counters.drop("bad_object")
            owner = None
        if owner is None or owner.uid != ref.uid:  # gone, or a namesake that replaced it
            self.cache.mark_gone(ref.uid)
        else:
            self._counters.emitted += 1
            self.cache.put(owner)

    def _note_custom(self, workload: WorkloadRef) -> None:
        key = (workload.kind, workload.name)
        if key not in self._custom_kinds_seen and len(self._custom_kinds_seen) < 1000:
            self._custom_kinds_seen.add(key)
            log.info("workload %s/%s: a custom owner kind, taken as the workload", *key)


class OwnerHandler:
    """Keeps cached controllers of one kind fresh from their list and watch."""

    def __init__(
        self,
        resource: Resource,
        resolver: OwnerResolver,
        owners_changed: Callable[[], Awaitable[None]],
        counters: StageCounters,
    ) -> None:
        self.resource = resource
        self._cache = resolver.cache
        self._owners_changed = owners_changed
        self._counters = counters
        self._listed: set[str] = set()
        self._changed = False

    def _slim(self, obj: Any) -> SlimOwner | None:
        self._counters.seen += 1
        try:
            return slim_owner(obj, self.resource.kind)
        except BadObject as exc:
            self._counters.drop("bad_object")
            log.warning("%s: %s", self.resource.kind, exc)
            return None

    async def begin_list(self) -> None:
        self._listed, self._changed = set(), False

    async def listed(self, obj: Any) -> None:
        owner = self._slim(obj)
        if owner is not None:
            self._listed.add(owner.uid)
            self._changed |= self._cache.refresh(owner)

    async def end_list(self) -> None:
        for uid in self._cache.uids() - self._listed:
            cached = self._cache.lookup(uid)
            if cached is None or cached.kind == self.resource.kind:
                self._cache.evict(uid)  # fetched again, if a pod still needs it
        self._listed = set()
        if self._changed:
            await self._owners_changed()

    async def event(self, kind: EventType, obj: Any) -> None:
        owner = self._slim(obj)
        if owner is None:
            return
        if kind == "DELETED":
            if owner.uid in self._cache:
                self._cache.mark_gone(owner.uid)
        elif self._cache.refresh(owner):
            self._counters.emitted += 1
            await self._owners_changed()
