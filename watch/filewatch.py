"""The inventory-file watcher: publish a file's pods, services and nodes, then its changes.

At start the file must load (a bad file is an error, not an empty cluster);
the tables adopt what the topics hold, and the file's records are published,
every record the file no longer has getting its deletion record. Then the
file is polled: when its size, time or inode change and its content hash
differs, it is loaded again and only what changed is published (created,
changed, deleted objects). A reload that fails is logged and counted and the
last good content stays published. Writers should replace the file
atomically (write a temporary file, then rename it).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from callmap.backoff import DEFAULT_START_TIMEOUT
from callmap.config import Settings
from callmap.errors import ConfigError
from callmap.inventory import Inventory, InventoryError, inventory_records, load_inventory
from callmap.metrics import serve_metrics
from callmap.wire import local_identity_key
from watch.identitytable import IdentityTable, R
from watch.options import DEFAULT_HEARTBEAT
from watch.runtime import IdentityOutput, every, stand_in_uid

log = logging.getLogger(__name__)

FLUSH_TIMEOUT = 10.0
FileState = tuple[int, int, int]  # (inode, size, mtime in ns)


class InventoryWatcher:
    """Publishes an inventory file and follows its changes, until cancelled."""

    def __init__(
        self,
        settings: Settings,
        path: Path,
        *,
        cluster: str | None,
        retention: float,
        poll_interval: float = 1.0,
        sweep_interval: float = 10.0,
        metrics_port: int = 0,
        heartbeat: float = DEFAULT_HEARTBEAT,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.poll_interval = poll_interval
        self.sweep_interval = sweep_interval
        self.metrics_port = metrics_port
        self.heartbeat = heartbeat
        self.domain = settings.cluster_domain
        self.clock = clock
        inventory = self._load()  # fail before anything else when the file is unusable
        self.cluster = cluster or inventory.cluster or settings.cluster
        # A --cluster given on the command line wins over the file, also on reloads.
        self._cluster_from_file = cluster is None and bool(inventory.cluster)
        self.output = IdentityOutput(settings, self.cluster, retention, start_timeout)
        self.counters = self.output.counters
        self._first = inventory
        self.cluster_uid = inventory.cluster_uid or stand_in_uid(self.cluster)
        """The file's ``cluster_uid``; else an id made from the alias (logged at start)."""
        self._state: FileState | None = None
        self._digest = b""
        self.loads = 0
        self.ready = asyncio.Event()
        """Set once the file's first content has been handed to the publisher."""

    def _load(self) -> Inventory:
        try:
            inventory = load_inventory(self.path.read_text(encoding="utf-8"))
            inventory_records(inventory, inventory.cluster or "")  # duplicate keys
            return inventory
        except (OSError, InventoryError) as exc:
            raise ConfigError(f"inventory {self.path}: {exc}") from None

    async def run(self) -> None:
        if self.metrics_port:
            serve_metrics(self.metrics_port, self.output.collector(lambda: {}, {}))
        try:
            await self.output.begin_term()
            self._state, self._digest = self._stat(), self._hash()
            self.apply(self._first)
            self.ready.set()
            if self._first.cluster_uid is None:
                log.info(
                    "inventory names no cluster_uid: cluster %s gets one from its name",
                    self.cluster,
                )
            async with asyncio.TaskGroup() as group:
                group.create_task(self.output.publisher.run(), name="watch-publisher")
                heartbeat = self.output.heartbeat(self.cluster_uid, self.domain, self.heartbeat)
                group.create_task(heartbeat, name="watch-heartbeat")
                group.create_task(every(self.poll_interval, self._poll), name="watch-inventory")
                group.create_task(every(self.sweep_interval, self._sweep), name="watch-retention")
        finally:
            await self.output.publisher.flush(FLUSH_TIMEOUT)

    def apply(self, inventory: Inventory) -> int:
        """Publish what differs between the tables and ``inventory``; how many changes.

        An entry with ``deleted`` set is a deleted object still within its
        retention: published once, then tombstoned ``retention`` seconds after
        its deletion time, though it stays in the file; past that it is as if
        the file did not have it.
        """
        if (
            self._cluster_from_file
            and inventory.cluster
            and inventory.cluster != self.cluster
            and self.loads
        ):
            raise InventoryError(
                f"the file now names cluster {inventory.cluster!r}, not {self.cluster!r}"
            )
        records = inventory_records(inventory, self.cluster)
        tables, now = self.output.tables, self.clock()
        changes = self._apply(tables.pods, records.pods, now)
        changes += self._apply(tables.services, records.services, now)
        changes += self._apply(tables.nodes, records.nodes, now)
        self.loads += 1
        stage = self.counters.stage("inventory")
        stage.seen += len(records.pods) + len(records.services) + len(records.nodes)
        stage.emitted += changes
        return changes

    def _apply(self, table: IdentityTable[R], records: Sequence[R], now: float) -> int:
        changes, present = 0, set()
        for record in records:
            key = local_identity_key(record)
            if record.deleted is not None and record.deleted + table.retention <= now:
                continue  # its retention is over: gone, as far as the topics are concerned
            present.add(key)
            changes += table.put(key, record)
            if record.deleted is not None:
                table.delete(key, now)  # schedules its tombstone
        return changes + len(table.reconcile(present, now))

    def _stat(self) -> FileState | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def _hash(self) -> bytes:
        try:
            return hashlib.sha256(self.path.read_bytes()).digest()
        except OSError:
            return b""

    def _poll(self) -> None:
        state = self._stat()
        if state == self._state:
            return
        self._state = state
        digest = self._hash()
        if digest == self._digest:
            return
        try:
            inventory = self._load()
            changes = self.apply(inventory)
        except (ConfigError, InventoryError) as exc:
            self.counters.stage("inventory").drop("bad_file")
            log.error("%s; keeping what was published before", exc)
            return
        self._digest = digest
        log.info("inventory %s changed: %d identity changes", self.path, changes)

    def _sweep(self) -> None:
        tables, now = self.output.tables, self.clock()
        for table in (tables.pods, tables.services, tables.nodes):
            table.expire(now)
