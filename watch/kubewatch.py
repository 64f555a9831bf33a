"""The Kubernetes watcher: leader election, list-then-watch loops, retention, Kafka.

One :class:`KubeWatcher` per cluster publishes at a time. While it waits for
the Lease it does nothing else; once it leads, a *term* starts: the tables
adopt what the identity topics hold, then named tasks run the publisher, the
retention sweeper, the heartbeat (the cluster's id: its kube-system
namespace's UID), one reflector per controller kind (keeping cached owners
fresh), and the reflectors of nodes, pods, EndpointSlices and services, whose
first lists run in that order so that a service's first record already
carries the workloads behind it. A lost lease ends the term (its tasks are
cancelled, unsent changes dropped: the new leader publishes) and the watcher
waits to lead again. Cancelling :meth:`KubeWatcher.run` (SIGTERM) flushes
what is pending to Kafka, then releases the Lease.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

from prometheus_client.registry import Collector

from callmap.backoff import retrying
from callmap.config import Settings
from callmap.metrics import serve_metrics
from watch.catalog import Catalog
from watch.handlers import PodHandler, identity_handlers
from watch.kubeclient import (
    OWNERS,
    SERVICE_EXPORT,
    KubeApi,
    api_client,
)
from watch.lease import LeaderElector, LeadershipLost
from watch.options import WatchOptions
from watch.ownercache import OwnerHandler, OwnerResolver, api_fetch
from watch.permissions import check_permissions
from watch.reflector import Reflector
from watch.runtime import IdentityOutput, every

log = logging.getLogger(__name__)

FLUSH_TIMEOUT = 10.0


class KubeWatcher:
    """Publishes one cluster's identities while it holds the Lease."""

    def __init__(
        self,
        settings: Settings,
        options: WatchOptions,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.output = IdentityOutput(
            settings, options.cluster, options.retention, options.start_timeout
        )
        self.counters = self.output.counters
        self.catalog = Catalog(options.cluster, self.output.tables)
        self.clock = clock
        self.reflectors: dict[str, Reflector] = {}
        self.elector: LeaderElector | None = None
        self.resolver: OwnerResolver | None = None
        self.terms = 0
        self.ready = asyncio.Event()
        """Set when a term's first lists are complete (cleared when a term ends)."""
        self.settings = settings
        self.cluster_uid: str | None = None
        """The UID of the cluster's kube-system namespace, read at the start of a term."""

    @property
    def leading(self) -> bool:
        return self.elector.leading if self.elector is not None else self.terms > 0

    async def run(self) -> None:
        """Wait to lead, lead, repeat; until cancelled or a PermanentError."""
        async with api_client(self.options.source) as api_client_:
            if self.options.check_permissions:
                await check_permissions(api_client_, self.options.lease)
            if self.options.metrics_port:
                serve_metrics(self.options.metrics_port, self._collector())
            api = KubeApi(api_client_, self.options.timeouts.request_timeout)
            if self.options.lease is not None:
                self.elector = LeaderElector(api_client_, self.options.lease)
                self.output.publisher.entitled = self.elector.entitled
            try:
                while True:
                    if self.elector is not None:
                        await self.elector.acquire()
                    try:
                        await self._term(api)
                    except* LeadershipLost as lost:
                        log.warning("stopped leading: %s", lost.exceptions[0])
                    self.ready.clear()
            finally:
                await self._shutdown()

    async def _shutdown(self) -> None:
        if self.leading:
            await self.output.publisher.flush(FLUSH_TIMEOUT)
        if self.elector is not None:
            await self.elector.release()

    async def _term(self, api: KubeApi) -> None:
        self.terms += 1
        self.catalog.clear()
        async with asyncio.TaskGroup() as group:
            if self.elector is not None:
                group.create_task(self.elector.hold(), name="watch-lease")
            group.create_task(self._start(api, group), name="watch-start")

    async def _start(self, api: KubeApi, group: asyncio.TaskGroup) -> None:
        await self.output.begin_term()
        group.create_task(self.output.publisher.run(), name="watch-publisher")
        self.cluster_uid = await retrying(api.cluster_uid, "read the cluster's id")
        heartbeat = self.output.heartbeat(
            self.cluster_uid, self.settings.cluster_domain, self.options.heartbeat
        )
        group.create_task(heartbeat, name="watch-heartbeat")
        group.create_task(every(self.options.sweep_interval, self._sweep), name="watch-retention")
        exports = await retrying(lambda: api.serves(SERVICE_EXPORT), "discover the MCS API")
        if not exports:
            log.info("the MCS API (ServiceExport) is not served here: no service is exported")
        owners, ordered = self._reflectors(api, exports)
        self.reflectors = {r.resource.plural: r for r in (*owners, *ordered)}
        for reflector in owners:
            group.create_task(reflector.run(), name=f"watch-{reflector.resource.plural}")
        for reflector in ordered:
            group.create_task(reflector.run(), name=f"watch-{reflector.resource.plural}")
            await reflector.listed.wait()
        self.ready.set()
        tables = self.output.tables
        log.info(
            "cluster %s ready: %d pods, %d services, %d nodes",
            self.options.cluster,
            len(tables.pods),
            len(tables.services),
            len(tables.nodes),
        )

    def _reflectors(self, api: KubeApi, exports: bool) -> tuple[list[Reflector], list[Reflector]]:
        """The controller kinds' reflectors, and those of nodes, pods, EndpointSlices,
        ServiceExports (where ``exports``: the MCS API is served) and services, in the
        order their first lists run."""
        counters, clock, timeouts = self.counters, self.clock, self.options.timeouts
        resolver = self.resolver = OwnerResolver(api_fetch(api), counters.stage("owners"))
        pods = PodHandler(
            self.catalog, resolver, self.options.labels, counters.stage("pods"), clock
        )
        owners = [
            Reflector(
                api,
                resource,
                OwnerHandler(resource, resolver, pods.owners_changed, counters.stage("owners")),
                timeouts,
            )
            for resource in OWNERS.values()
        ]
        handlers = identity_handlers(self.catalog, pods, counters, clock, exports)
        return owners, [Reflector(api, r, handler, timeouts) for r, handler in handlers]

    def _sweep(self) -> None:
        expired = self.catalog.expire(self.clock())
        if expired:
            log.info("%d deleted identities reached their retention: tombstoned", expired)

    def restarts(self) -> dict[str, Counter[str]]:
        return {plural: r.restarts for plural, r in self.reflectors.items()}

    def _collector(self) -> Collector:
        return self.output.collector(
            self.restarts,
            {
                "leading": ("1 while this watcher holds the Lease.", self._leading_gauge),
                "owners_cached": ("Controllers in the owner cache.", self._owners_gauge),
                "exported_services": (
                    "Services a ServiceExport (MCS API) exports.",
                    lambda: float(self.exported_services()),
                ),
            },
        )

    def _leading_gauge(self) -> float:
        return float(self.leading)

    def _owners_gauge(self) -> float:
        return float(len(self.resolver.cache)) if self.resolver is not None else 0.0

    def exported_services(self) -> int:
        """Live services that a ServiceExport exports."""
        services = self.output.tables.services.items()
        return sum(1 for _, s in services if s.exported and s.deleted is None)
