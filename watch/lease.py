"""One active watcher per cluster: leader election with a coordination.k8s.io/v1 Lease.

The rules are client-go's. A candidate may take the lease when nobody holds
it, when it holds it already, or when it has watched the same lease record
for longer than the record's ``leaseDurationSeconds`` without a renewal. It
judges expiry by its own monotonic clock from the moment it first saw that
record, never by the holder's timestamps, so clock skew between machines does
not matter. Every write carries the resourceVersion it read: two candidates
racing for the lease cannot both win. The leader renews every retry period and
steps down when it could not renew for the renew deadline; a clean shutdown
releases the lease (empty holder), so a standby takes over at its next try.

:class:`Election` is the pure decision; :class:`LeaderElector` talks to the API.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from kubernetes_asyncio import client

from callmap.errors import CallmapError, TemporaryError
from watch.kubeclient import Conflict, NotFound, map_api_errors
from watch.options import LeaseOptions

log = logging.getLogger(__name__)


class LeadershipLost(CallmapError):
    """The leader could not renew its lease in time, or another took it."""


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """What a Lease says, as far as the election cares."""

    holder: str | None
    duration: float
    renewed: datetime | None = None
    transitions: int = 0


class Election:
    """Whether ``identity`` may take the lease, from the records it has observed."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.observed: LeaseRecord | None = None
        self.observed_at = 0.0

    def observe(self, record: LeaseRecord, now: float) -> None:
        """Note the lease as just read; the expiry clock restarts when it changed."""
        if record != self.observed:
            self.observed = record
            self.observed_at = now

    def may_take(self, now: float) -> bool:
        record = self.observed
        if record is None or not record.holder or record.holder == self.identity:
            return True
        return now >= self.observed_at + record.duration

    def holds(self) -> bool:
        return self.observed is not None and self.observed.holder == self.identity


def record_of(lease: client.V1Lease) -> LeaseRecord:
    spec = lease.spec or client.V1LeaseSpec()
    return LeaseRecord(
        holder=spec.holder_identity or None,
        duration=float(spec.lease_duration_seconds or 0),
        renewed=spec.renew_time,
        transitions=spec.lease_transitions or 0,
    )


class LeaderElector:
    """Acquires, holds and releases the Lease for one watcher."""

    def __init__(
        self,
        api: client.ApiClient,
        options: LeaseOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.identity = options.identity or default_identity()
        self.election = Election(self.identity)
        self.leading = False
        self.renewed_at: float | None = None
        """When this instance last took or renewed the lease (its clock)."""
        self._api = client.CoordinationV1Api(api)
        self._clock = clock

    def entitled(self) -> bool:
        """Whether this instance may publish: it leads, and renewed the lease within the
        renew deadline. A standby may take the lease only after the lease duration,
        which is longer, so a leader that checks this stops before another begins (a
        process paused past the deadline finds its clock moved on when it resumes)."""
        renewed = self.renewed_at
        return (
            self.leading
            and renewed is not None
            and self._clock() - renewed < self.options.renew_deadline
        )

    async def acquire(self) -> None:
        """Return once this instance holds the lease."""
        log.info("waiting to lead: lease %s/%s", self.options.namespace, self.options.name)
        while not await self._try():
            await asyncio.sleep(self.options.retry_period)
        self.renewed_at = self._clock()
        self.leading = True
        log.info("leading as %s", self.identity)

    async def hold(self) -> NoReturn:
        """Renew until the renew deadline passes without success: LeadershipLost."""
        renewed = self.renewed_at = self._clock()
        while True:
            await asyncio.sleep(self.options.retry_period)
            left = self.options.renew_deadline - (self._clock() - renewed)
            try:
                async with asyncio.timeout(max(left, 0.1)):
                    ok = await self._try()
            except TimeoutError:
                ok = False
            if ok:
                renewed = self.renewed_at = self._clock()
            elif not self.election.holds() and self.election.observed is not None:
                self.leading = False
                raise LeadershipLost(f"lease taken by {self.election.observed.holder}")
            elif self._clock() - renewed >= self.options.renew_deadline:
                self.leading = False
                raise LeadershipLost(f"could not renew for {self.options.renew_deadline:g}s")

    async def release(self) -> None:
        """Give the lease up, if held, so a standby need not wait for it to expire."""
        if not self.leading:
            return
        self.leading = False
        try:
            lease = await self._read()
            if lease is None or record_of(lease).holder != self.identity:
                return
            now = datetime.now(UTC)
            lease.spec.holder_identity = ""
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = now
            with map_api_errors("release the lease"):
                await self._api.replace_namespaced_lease(
                    self.options.name, self.options.namespace, lease
                )
            log.info("released lease %s/%s", self.options.namespace, self.options.name)
        except CallmapError as exc:
            log.warning("could not release the lease: %s", exc)

    async def _read(self) -> client.V1Lease | None:
        try:
            with map_api_errors("read the lease"):
                lease: client.V1Lease = await self._api.read_namespaced_lease(
                    self.options.name, self.options.namespace
                )
                return lease
        except NotFound:
            return None

    async def _try(self) -> bool:
        """One attempt to take or renew the lease; False if not (yet) ours."""
        try:
            lease = await self._read()
            if lease is None:
                return await self._write(None)
            self.election.observe(record_of(lease), self._clock())
            if not self.election.may_take(self._clock()):
                return False
            return await self._write(lease)
        except TemporaryError as exc:
            log.warning("lease: %s", exc)
            return False

    async def _write(self, lease: client.V1Lease | None) -> bool:
        now = datetime.now(UTC)
        duration = math.ceil(self.options.duration)
        if lease is None:
            spec = client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=duration,
                acquire_time=now,
                renew_time=now,
                lease_transitions=0,
            )
            body: Any = client.V1Lease(
                metadata=client.V1ObjectMeta(
                    name=self.options.name, namespace=self.options.namespace
                ),
                spec=spec,
            )
            call = self._api.create_namespaced_lease(self.options.namespace, body)
        else:
            spec = lease.spec or client.V1LeaseSpec()
            if spec.holder_identity != self.identity:
                spec.acquire_time = now
                spec.lease_transitions = (spec.lease_transitions or 0) + (
                    1 if spec.holder_identity else 0
                )
            spec.holder_identity = self.identity
            spec.lease_duration_seconds = duration
            spec.renew_time = now
            lease.spec = spec  # lease.metadata keeps the resourceVersion read: a conflict fails
            call = self._api.replace_namespaced_lease(
                self.options.name, self.options.namespace, lease
            )
        try:
            with map_api_errors("write the lease"):
                written: client.V1Lease = await call
        except Conflict:
            return False  # another candidate wrote first
        self.election.observe(record_of(written), self._clock())
        return True
