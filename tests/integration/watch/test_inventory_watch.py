"""The inventory source: a file's pods, services and nodes on the real broker, then its changes.

The lab writes such a file and replaces it as its topology churns; the
compacted topics must follow: created, changed and deleted objects, a
deletion record first and a tombstone after the retention.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from helpers.identitytopics import eventually, topics

from callmap.broker import make_consumer, read_to_end, topic_partitions
from callmap.config import Settings
from callmap.errors import ConfigError
from callmap.inventory import pod_uid
from callmap.wire import CLUSTERS, ClusterInfo, decode
from watch.filewatch import InventoryWatcher
from watch.identitytable import IdentityTables

pytestmark = pytest.mark.kafka

FIRST = """
pods:
  - namespace: shop
    name: cart-1
    ips: [10.9.0.1]
    workload: {kind: Deployment, name: cart}
  - namespace: shop
    name: web-1
    ips: [10.9.0.2, "fd00::2"]
    workload: {kind: Deployment, name: web}
services:
  - namespace: shop
    name: cart
    cluster_ips: [10.96.9.1]
    ports: [{port: 7070}]
    workloads: [{namespace: shop, kind: Deployment, name: cart}]
nodes:
  - name: lab-node
    ips: [192.168.9.1]
"""

# cart-1 gets a new IP, web-1 is gone, web-2 is new, the service is gone.
SECOND = """
pods:
  - namespace: shop
    name: cart-1
    ips: [10.9.0.9]
    workload: {kind: Deployment, name: cart}
  - namespace: shop
    name: web-2
    ips: [10.9.0.2]
    workload: {kind: Deployment, name: web}
nodes:
  - name: lab-node
    ips: [192.168.9.1]
"""


def write(path: Path, text: str) -> None:
    """Replace the file atomically, as docs/watch.md asks of writers."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}")
    temporary.write_text(text)
    temporary.replace(path)


@asynccontextmanager
async def running(watcher: InventoryWatcher) -> AsyncIterator[InventoryWatcher]:
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(watcher.ready.wait(), 30)
        yield watcher
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def has_node(name: str) -> Callable[[IdentityTables], None]:
    def check(state: IdentityTables) -> None:
        assert state.nodes.get(name) is not None, f"no record of node {name} (yet)"

    return check


def uid(cluster: str, name: str) -> str:
    return pod_uid(cluster, "shop", name)


async def test_a_file_is_published_and_its_changes_follow(
    settings: Settings, tmp_path: Path
) -> None:
    cluster = f"lab-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "inventory.yaml"
    write(path, FIRST)
    watcher = InventoryWatcher(
        settings, path, cluster=cluster, retention=1.5, poll_interval=0.1, sweep_interval=0.1
    )
    async with running(watcher):

        def first(state: IdentityTables) -> None:
            assert set(state.pods.live_keys()) == {uid(cluster, "cart-1"), uid(cluster, "web-1")}
            assert state.services.live_keys() == {"shop/cart"}
            assert state.nodes.live_keys() == {"lab-node"}

        state = await eventually(settings, cluster, first)
        web = state.pods.get(uid(cluster, "web-1"))
        assert web is not None and web.ips == ("10.9.0.2", "fd00::2")

        write(path, SECOND)

        def deleted_first(state: IdentityTables) -> None:
            gone = state.pods.get(uid(cluster, "web-1"))
            assert gone is not None and gone.deleted is not None  # late events still resolve
            cart = state.pods.get(uid(cluster, "cart-1"))
            assert cart is not None and cart.ips == ("10.9.0.9",)

        await eventually(settings, cluster, deleted_first, timeout=10)

        def then_tombstoned(state: IdentityTables) -> None:
            assert state.pods.live_keys() == {uid(cluster, "cart-1"), uid(cluster, "web-2")}
            assert state.pods.get(uid(cluster, "web-1")) is None
            assert state.services.get("shop/cart") is None

        await eventually(settings, cluster, then_tombstoned)


async def test_a_bad_reload_keeps_what_was_published(settings: Settings, tmp_path: Path) -> None:
    cluster = f"lab-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "inventory.yaml"
    write(path, FIRST)
    watcher = InventoryWatcher(settings, path, cluster=cluster, retention=60, poll_interval=0.1)
    async with running(watcher):
        await eventually(settings, cluster, has_node("lab-node"))
        write(path, "pods: [{namespace: shop, name: x, ip: [10.0.0.1]}]")  # `ip`: a typo
        deadline = time.monotonic() + 10
        while not watcher.counters.totals()["inventory"].dropped and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert watcher.counters.totals()["inventory"].dropped == {"bad_file": 1}
        state = await topics(settings, cluster)
        assert len(state.pods.live_keys()) == 2 and state.services.live_keys() == {"shop/cart"}


def test_a_bad_file_at_start_is_an_error_naming_the_field(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text("services: [{namespace: shop, name: cart, type: Sideways}]")
    with pytest.raises(ConfigError, match=r"Invalid enum value 'Sideways' - at `services\[0\]"):
        InventoryWatcher(settings, path, cluster="c", retention=60)


async def test_the_command_publishes_a_file_and_stops_cleanly_on_sigterm(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "inventory.json"
    cluster = f"lab-{uuid.uuid4().hex[:6]}"
    nodes = '[{"name": "json-node", "ips": ["192.168.9.9"]}]'
    path.write_text(f'{{"cluster": "{cluster}", "nodes": {nodes}}}')
    env = os.environ | {
        "CALLMAP_KAFKA_BOOTSTRAP": settings.kafka.bootstrap_servers,
        "CALLMAP_TOPIC_REPLICATION": "1",
        "CALLMAP_TOPIC_PARTITIONS": "3",
    }
    env.pop("CALLMAP_CLUSTER", None)  # the file names the cluster
    command = [sys.executable, "-m", "watch", "--inventory", str(path), "--metrics-port", "0"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    try:
        state = await eventually(settings, cluster, has_node("json-node"), timeout=30)
        node = state.nodes.get("json-node")
        assert node is not None and node.ips == ("192.168.9.9",)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr.decode()


async def clusters_topic(settings: Settings) -> dict[str, ClusterInfo]:
    """The latest heartbeat of every cluster on callmap.clusters.v1."""
    partitions = await topic_partitions(settings.kafka, [CLUSTERS.name])
    consumer = make_consumer(settings.kafka)
    await consumer.start()
    try:
        latest = {}
        async for message in read_to_end(consumer, partitions):
            record = decode(CLUSTERS, message.value)  # type: ignore[arg-type]
            assert isinstance(record, ClusterInfo)
            latest[record.cluster] = record
        return latest
    finally:
        await consumer.stop()


@pytest.mark.parametrize("named", [True, False], ids=["uid-in-file", "uid-from-name"])
async def test_an_inventory_beats_with_its_clusters_id(
    settings: Settings, tmp_path: Path, named: bool
) -> None:
    cluster = f"inv-{uuid.uuid4().hex[:6]}"
    given = str(uuid.uuid4())
    path = tmp_path / "inventory.yaml"
    write(path, (f"cluster_uid: {given}\n" if named else "") + FIRST)
    watcher = InventoryWatcher(settings, path, cluster=cluster, retention=60, heartbeat=0.5)
    async with running(watcher):
        deadline = time.monotonic() + 20
        while cluster not in (beats := await clusters_topic(settings)):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.3)
    expected = given if named else str(uuid.uuid5(uuid.NAMESPACE_URL, f"callmap:cluster:{cluster}"))
    assert beats[cluster].uid == expected and beats[cluster].heartbeat == 0.5
