"""Slim Kubernetes objects in, identity records out: the watcher's pure core.

The :class:`Catalog` turns pods (with their resolved workloads), services,
EndpointSlices and nodes into ``PodIdentity``, ``ServiceIdentity`` and
``NodeIdentity`` records in its :class:`~watch.identitytable.IdentityTables`, which
publish what changes. It also keeps the relations that make a record depend
on other objects: a service's workloads come from the pods its EndpointSlices
name (ready or not), so a slice, or a pod's workload, changing republishes
the services concerned. Events may come in any order across kinds (a slice
before its pods): the records converge once both have been seen.

Records say since when they hold what they hold, as the streams' time rules
need (docs/streams.md, "Resolution: the contract"): a pod's ``ips_since`` is
when its sandbox got its network (the ``PodReadyToStartContainers`` condition)
or, on older clusters, when the watcher saw the IPs appear, or the pod's
``startTime`` if it already had them when first seen; a service's
``workloads_since`` is when the watcher saw its workloads change (None for
the workloads it first saw, which stand since the service's creation).

Pure and single-threaded: the caller passes the time in.
"""

from __future__ import annotations

import msgspec

from callmap.wire import NodeIdentity, PodIdentity, ServiceIdentity, ServiceWorkload, WorkloadRef
from watch.identitytable import IdentityTables
from watch.objects import SlimNode, SlimPod, SlimService, SlimSlice

PodName = tuple[str, str]  # (namespace, name): how EndpointSlices name pods


class Catalog:
    """Current identities of one cluster, and what each depends on."""

    def __init__(self, cluster: str, tables: IdentityTables) -> None:
        self.cluster = cluster
        self.tables = tables
        # The newest pod under each name, by namespace (no key tuple per pod).
        self._pod_uids: dict[str, dict[str, str]] = {}
        self._slices: dict[str, SlimSlice] = {}
        self._slices_by_service: dict[str, set[str]] = {}
        self._services_by_pod: dict[PodName, set[str]] = {}
        self._exports: set[str] = set()  # namespace/name of every ServiceExport

    # --- pods ---------------------------------------------------------------------

    def pod_seen(self, pod: SlimPod, workload: WorkloadRef, now: float) -> bool:
        """A pod as listed or watched; True if its record changed."""
        before = self.tables.pods.get(pod.uid)
        deleted = None
        if pod.finished:  # it no longer holds its IPs; keep the time it was first seen so
            deleted = before.deleted if before and before.deleted is not None else now
        record = PodIdentity(
            cluster=self.cluster,
            uid=pod.uid,
            namespace=pod.namespace,
            name=pod.name,
            ips=pod.ips,
            node=pod.node,
            host_network=pod.host_network,
            workload=workload,
            labels=pod.labels,
            created=pod.created,
            deleted=deleted,
            ips_since=_ips_since(pod, before, now),
            hostname=pod.hostname,
            subdomain=pod.subdomain,
        )
        changed = self.tables.pods.put(pod.uid, record)
        name = (pod.namespace, pod.name)
        names = self._pod_uids.setdefault(pod.namespace, {})
        if names.get(pod.name) != pod.uid:
            names[pod.name] = pod.uid
            self._refresh_services_of(name, now)
        elif before is None or before.workload != workload:
            self._refresh_services_of(name, now)
        return changed

    def pod_deleted(self, uid: str, now: float) -> bool:
        return self.tables.pods.delete(uid, now)

    def pods_listed(self, uids: set[str], now: float) -> list[str]:
        """After a full list of pods: every other pod is deleted."""
        return self.tables.pods.reconcile(uids, now)

    def pod_workload(self, uid: str, workload: WorkloadRef, now: float) -> bool:
        """A live pod's workload changed (its owner did); True if republished."""
        record = self.tables.pods.get(uid)
        if record is None or record.deleted is not None or record.workload == workload:
            return False
        self.tables.pods.put(uid, msgspec.structs.replace(record, workload=workload))
        self._refresh_services_of((record.namespace, record.name), now)
        return True

    # --- services and their EndpointSlices ----------------------------------------------

    def service_seen(self, service: SlimService, now: float) -> bool:
        before = self.tables.services.get(service.key)
        if before is not None and before.deleted is not None:
            before = None  # recreated under its name: a new service
        workloads = self._workloads_behind(service.key)
        record = ServiceIdentity(
            cluster=self.cluster,
            namespace=service.namespace,
            name=service.name,
            type=service.type,
            cluster_ips=service.cluster_ips,
            external_name=service.external_name,
            ports=service.ports,
            workloads=workloads,
            created=service.created,
            workloads_since=_workloads_since(workloads, before, now),
            exported=service.key in self._exports,
        )
        return self.tables.services.put(service.key, record)

    # --- ServiceExports (MCS API) -----------------------------------------------------

    def export_seen(self, key: str) -> bool:
        """A ServiceExport of service ``key`` exists: its record says ``exported``."""
        self._exports.add(key)
        return self._mark_exported(key, True)

    def export_deleted(self, key: str) -> bool:
        self._exports.discard(key)
        return self._mark_exported(key, False)

    def exports_listed(self, keys: set[str]) -> list[str]:
        """After a list: forget exports that are gone; the keys whose record changed."""
        gone = [key for key in self._exports if key not in keys]
        return [key for key in gone if self.export_deleted(key)]

    def _mark_exported(self, key: str, exported: bool) -> bool:
        record = self.tables.services.get(key)
        if record is None or record.deleted is not None or record.exported == exported:
            return False  # the service comes later (or never): its record will say
        return self.tables.services.put(key, msgspec.structs.replace(record, exported=exported))

    def service_deleted(self, key: str, now: float) -> bool:
        return self.tables.services.delete(key, now)

    def services_listed(self, keys: set[str], now: float) -> list[str]:
        return self.tables.services.reconcile(keys, now)

    def slice_seen(self, endpoint_slice: SlimSlice, now: float) -> None:
        key = endpoint_slice.key
        before = self._slices.get(key)
        if before == endpoint_slice:
            return
        if before is not None:
            self._unlink(key, before)
        self._slices[key] = endpoint_slice
        if endpoint_slice.service is not None:
            self._slices_by_service.setdefault(endpoint_slice.service, set()).add(key)
            for name in endpoint_slice.pods:
                self._services_by_pod.setdefault(name, set()).add(endpoint_slice.service)
            self._refresh_service(endpoint_slice.service, now)
        if before is not None and before.service not in (None, endpoint_slice.service):
            self._refresh_service(before.service, now)

    def slice_deleted(self, key: str, now: float) -> None:
        before = self._slices.pop(key, None)
        if before is not None:
            self._unlink(key, before)
            if before.service is not None:
                self._refresh_service(before.service, now)

    def slices_listed(self, keys: set[str], now: float) -> None:
        for key in [key for key in self._slices if key not in keys]:
            self.slice_deleted(key, now)

    def _unlink(self, key: str, endpoint_slice: SlimSlice) -> None:
        service = endpoint_slice.service
        if service is None:
            return
        slices = self._slices_by_service.get(service, set())
        slices.discard(key)
        if not slices:
            self._slices_by_service.pop(service, None)
        still_named = {name for k in slices for name in self._slices[k].pods}
        for name in endpoint_slice.pods:
            if name in still_named:
                continue
            services = self._services_by_pod.get(name)
            if services is not None:
                services.discard(service)
                if not services:
                    del self._services_by_pod[name]

    def _workloads_behind(self, service: str) -> tuple[ServiceWorkload, ...]:
        workloads: set[ServiceWorkload] = set()
        for key in self._slices_by_service.get(service, ()):
            for name in self._slices[key].pods:
                uid = self._pod_uids.get(name[0], {}).get(name[1])
                pod = self.tables.pods.get(uid) if uid is not None else None
                if pod is not None:
                    workload = pod.workload
                    workloads.add(
                        ServiceWorkload(
                            namespace=pod.namespace, kind=workload.kind, name=workload.name
                        )
                    )
        return tuple(sorted(workloads, key=lambda w: (w.namespace, w.kind, w.name)))

    def _refresh_service(self, key: str, now: float) -> None:
        record = self.tables.services.get(key)
        if record is None or record.deleted is not None:
            return  # the slice came first: the service's record will include it
        workloads = self._workloads_behind(key)
        if workloads != record.workloads:
            since = _workloads_since(workloads, record, now)
            self.tables.services.put(
                key, msgspec.structs.replace(record, workloads=workloads, workloads_since=since)
            )

    def _refresh_services_of(self, name: PodName, now: float) -> None:
        for service in self._services_by_pod.get(name, ()):
            self._refresh_service(service, now)

    # --- nodes -------------------------------------------------------------------

    def node_seen(self, node: SlimNode) -> bool:
        record = NodeIdentity(cluster=self.cluster, name=node.name, ips=node.ips)
        return self.tables.nodes.put(node.name, record)

    def node_deleted(self, name: str, now: float) -> bool:
        return self.tables.nodes.delete(name, now)

    def nodes_listed(self, names: set[str], now: float) -> list[str]:
        return self.tables.nodes.reconcile(names, now)

    # --- time ----------------------------------------------------------------------

    def expire(self, now: float) -> int:
        """Tombstones for deleted records past their retention; how many."""
        pods = self.tables.pods.expire(now)
        for pod in pods:
            name = (pod.namespace, pod.name)
            names = self._pod_uids.get(pod.namespace, {})
            if names.get(pod.name) == pod.uid:
                del names[pod.name]
                self._refresh_services_of(name, now)
        return (
            len(pods) + len(self.tables.services.expire(now)) + len(self.tables.nodes.expire(now))
        )

    def clear(self) -> None:
        self.tables.clear()
        self._pod_uids.clear()
        self._slices.clear()
        self._slices_by_service.clear()
        self._services_by_pod.clear()


# --- since when --------------------------------------------------------------------


def _ips_since(pod: SlimPod, before: PodIdentity | None, now: float) -> float | None:
    """Since when ``pod`` holds its IPs (the module's docstring gives the order)."""
    if not pod.ips:
        return None
    if pod.network_ready is not None:
        return pod.network_ready
    if before is not None and before.ips == pod.ips:
        return before.ips_since
    if before is not None:
        return now  # seen without them, or with others, a moment ago
    return pod.started if pod.started is not None else pod.created


def _workloads_since(
    workloads: tuple[ServiceWorkload, ...], before: ServiceIdentity | None, now: float
) -> float | None:
    """Since when a service has ``workloads``: the first set seen stands since its creation."""
    if before is None or not before.workloads:
        return before.workloads_since if before is not None else None
    if before.workloads == workloads:
        return before.workloads_since
    return now
