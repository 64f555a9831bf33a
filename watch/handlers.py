"""What pods, services, EndpointSlices and nodes mean to the catalog.

One handler per resource (see :class:`watch.reflector.Handler`): each slims
the objects it receives, counts them into its stage (``seen``: objects
received; ``emitted``: records that changed; ``dropped``: by reason), feeds
the :class:`~watch.catalog.Catalog`, and after every full list reconciles, so
that an object that vanished while nobody watched gets its deletion record.
An object the watcher cannot use is counted as ``bad_object`` and logged with
the field at fault, never raised.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from callmap.counters import Counters, StageCounters
from watch.catalog import Catalog
from watch.kubeclient import ENDPOINT_SLICE, NODE, POD, SERVICE, SERVICE_EXPORT, Resource
from watch.objects import (
    BadObject,
    OwnerRef,
    SlimNode,
    SlimPod,
    SlimService,
    SlimSlice,
    slim_node,
    slim_pod,
    slim_service,
    slim_slice,
)
from watch.options import LabelPolicy
from watch.ownercache import OwnerResolver
from watch.owners import PodLink, is_followed
from watch.reflector import EventType, Handler

log = logging.getLogger(__name__)

S = TypeVar("S", SlimPod, SlimService, SlimSlice, SlimNode, str)
Clock = Callable[[], float]


def _raw_key(obj: Any, style: str) -> str | None:
    """The key of an object too broken to slim, so that a list still counts it as present."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        return None
    if style == "uid":
        uid = meta.get("uid")
        return uid if isinstance(uid, str) and uid else None
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not name:
        return None
    return f"{namespace}/{name}" if style == "namespace/name" else name


def _where(obj: Any) -> str:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        return "?"
    return "/".join(str(meta[k]) for k in ("namespace", "name") if meta.get(k)) or "?"


class _Handler(ABC, Generic[S]):
    """Slim, count, apply; subclasses say how one kind is keyed and applied."""

    kind = ""
    key_style = "namespace/name"

    def __init__(self, catalog: Catalog, counters: StageCounters, clock: Clock) -> None:
        self.catalog = catalog
        self.counters = counters
        self.clock = clock
        self._listed: set[str] = set()

    @abstractmethod
    def _slim_one(self, obj: Any) -> S:
        """Each kind of object says this itself."""

    @abstractmethod
    def _key(self, item: S) -> str:
        """Each kind of object says this itself."""

    @abstractmethod
    async def _apply(self, item: S) -> bool:
        """Each kind of object says this itself."""

    @abstractmethod
    async def _delete(self, item: S) -> bool:
        """Each kind of object says this itself."""

    @abstractmethod
    def _reconcile(self, present: set[str]) -> list[str]:
        """Each kind of object says this itself."""

    def _slim(self, obj: Any) -> S | None:
        self.counters.seen += 1
        try:
            return self._slim_one(obj)
        except BadObject as exc:
            self.counters.drop("bad_object")
            log.warning("%s %s: %s; skipped", self.kind, _where(obj), exc)
            return None

    async def begin_list(self) -> None:
        self._listed = set()

    async def listed(self, obj: Any) -> None:
        item = self._slim(obj)
        # A broken object still exists: its last good record must not be deleted.
        key = self._key(item) if item is not None else _raw_key(obj, self.key_style)
        if key is not None:
            self._listed.add(key)
        if item is not None and await self._apply(item):
            self.counters.emitted += 1

    async def end_list(self) -> None:
        self.counters.emitted += len(self._reconcile(self._listed))
        self._listed = set()

    async def event(self, kind: EventType, obj: Any) -> None:
        item = self._slim(obj)
        if item is None:
            return
        changed = await (self._delete(item) if kind == "DELETED" else self._apply(item))
        if changed:
            self.counters.emitted += 1


class PodHandler(_Handler[SlimPod]):
    kind = "Pod"
    key_style = "uid"

    def __init__(
        self,
        catalog: Catalog,
        resolver: OwnerResolver,
        labels: LabelPolicy,
        counters: StageCounters,
        clock: Clock,
    ) -> None:
        super().__init__(catalog, counters, clock)
        self.resolver = resolver
        self.labels = labels
        # Pods whose workload depends on cached owners: their (shared) owner reference,
        # and the few workload-name overrides; namespace and name are in the records.
        self._owners: dict[str, OwnerRef] = {}
        self._overrides: dict[str, str] = {}

    def _slim_one(self, obj: Any) -> SlimPod:
        return slim_pod(obj, self.labels)

    def _key(self, item: SlimPod) -> str:
        return item.uid

    async def _apply(self, item: SlimPod) -> bool:
        workload = await self.resolver.workload(PodLink.of(item))
        if item.owner is not None and is_followed(item.owner):
            self._owners[item.uid] = item.owner
            if item.workload_name:
                self._overrides[item.uid] = item.workload_name
            else:
                self._overrides.pop(item.uid, None)
        return self.catalog.pod_seen(item, workload, self.clock())

    def _unlink(self, uid: str) -> None:
        self._owners.pop(uid, None)
        self._overrides.pop(uid, None)

    async def _delete(self, item: SlimPod) -> bool:
        self._unlink(item.uid)
        if item.uid not in self.catalog.tables.pods:
            await self._apply(item)  # created and deleted between two lists: still worth a record
            self._unlink(item.uid)
        return self.catalog.pod_deleted(item.uid, self.clock())

    def _reconcile(self, present: set[str]) -> list[str]:
        gone = self.catalog.pods_listed(present, self.clock())
        for uid in gone:
            self._unlink(uid)
        return gone

    async def owners_changed(self) -> None:
        """A cached controller's own owner changed: resolve every linked pod again."""
        for done, (uid, owner) in enumerate(list(self._owners.items())):
            if done % 1000 == 999:
                await asyncio.sleep(0)  # 100,000 pods take a while: let the Lease renew
            record = self.catalog.tables.pods.get(uid)
            if record is None:
                continue
            link = PodLink(record.namespace, record.name, owner, self._overrides.get(uid))
            workload = await self.resolver.workload(link)
            if self.catalog.pod_workload(uid, workload, self.clock()):
                self.counters.emitted += 1


class ServiceHandler(_Handler[SlimService]):
    kind = "Service"

    def _slim_one(self, obj: Any) -> SlimService:
        return slim_service(obj)

    def _key(self, item: SlimService) -> str:
        return item.key

    async def _apply(self, item: SlimService) -> bool:
        return self.catalog.service_seen(item, self.clock())

    async def _delete(self, item: SlimService) -> bool:
        return self.catalog.service_deleted(item.key, self.clock())

    def _reconcile(self, present: set[str]) -> list[str]:
        return self.catalog.services_listed(present, self.clock())


class ExportHandler(_Handler[str]):
    """ServiceExports (MCS API) publish nothing themselves: they mark services exported."""

    kind = "ServiceExport"

    def _slim_one(self, obj: Any) -> str:
        key = _raw_key(obj, self.key_style)
        if key is None or key.startswith("None/"):
            raise BadObject("metadata", "no namespace and name")
        return key

    def _key(self, item: str) -> str:
        return item

    async def _apply(self, item: str) -> bool:
        return self.catalog.export_seen(item)

    async def _delete(self, item: str) -> bool:
        return self.catalog.export_deleted(item)

    def _reconcile(self, present: set[str]) -> list[str]:
        return self.catalog.exports_listed(present)


class SliceHandler(_Handler[SlimSlice]):
    """EndpointSlices publish nothing themselves: they change services' workloads."""

    kind = "EndpointSlice"

    def _slim_one(self, obj: Any) -> SlimSlice:
        return slim_slice(obj)

    def _key(self, item: SlimSlice) -> str:
        return item.key

    async def _apply(self, item: SlimSlice) -> bool:
        self.catalog.slice_seen(item, self.clock())
        return False

    async def _delete(self, item: SlimSlice) -> bool:
        self.catalog.slice_deleted(item.key, self.clock())
        return False

    def _reconcile(self, present: set[str]) -> list[str]:
        self.catalog.slices_listed(present, self.clock())
        return []


class NodeHandler(_Handler[SlimNode]):
    kind = "Node"
    key_style = "name"

    def _slim_one(self, obj: Any) -> SlimNode:
        return slim_node(obj)

    def _key(self, item: SlimNode) -> str:
        return item.name

    async def _apply(self, item: SlimNode) -> bool:
        return self.catalog.node_seen(item)

    async def _delete(self, item: SlimNode) -> bool:
        return self.catalog.node_deleted(item.name, self.clock())

    def _reconcile(self, present: set[str]) -> list[str]:
        return self.catalog.nodes_listed(present, self.clock())


def identity_handlers(
    catalog: Catalog,
    pods: PodHandler,
    counters: Counters,
    clock: Clock,
    exports: bool,
) -> list[tuple[Resource, Handler]]:
    """The identity kinds with their handlers, in the order their first lists run:
    nodes, pods, EndpointSlices, ServiceExports (where ``exports``: the MCS API is
    served), services last (they read what the others left in the catalog)."""
    handlers: list[tuple[Resource, Handler]] = [
        (NODE, NodeHandler(catalog, counters.stage("nodes"), clock)),
        (POD, pods),
        (ENDPOINT_SLICE, SliceHandler(catalog, counters.stage("endpointslices"), clock)),
        (SERVICE, ServiceHandler(catalog, counters.stage("services"), clock)),
    ]
    if exports:
        exported = ExportHandler(catalog, counters.stage("serviceexports"), clock)
        handlers.insert(-1, (SERVICE_EXPORT, exported))
    return handlers
