"""Two ``callmap watch`` processes share a Lease on a real API server while pods come
and go; the leader is SIGKILLed (and started again, as a kubelet would) and, in
turn, cut off from the API server by a partition while it can still reach Kafka.

The truth is the test's own writes to the API server: every pod it made and
left must end on the pods topic with its address, every pod it deleted must
end deleted (or never published, if it lived only while no one led), and no
record may reach the topic twice (read message by message, committed records
only). A partitioned leader that went on publishing after the other took
over would show as a stale record after a newer one, or a doubled one.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from helpers.faultruns import FaultRow
from helpers.identitytopics import topics
from helpers.kubeapi import running_kube
from helpers.kubewatch import LEASE, Cluster, admin_client, holder, kubeconfig_via, start_watcher
from helpers.tcpcut import Relay
from kubernetes_asyncio import client

from callmap.broker import describe_topics, make_consumer, read_to_end
from callmap.config import Settings
from callmap.wire import PODS
from devtools.kube import DevKube
from watch.identitytable import IdentityTables

pytestmark = [pytest.mark.kube, pytest.mark.kafka, pytest.mark.timeout(900)]

LOAD_SECONDS = 80.0
RATE = 8.0
"""Pods made a second (each a create and a status write); one in four deletes an older one."""
FAULTS = ("kill", "partition", "kill", "partition")
FAULT_EVERY = 15.0
"""Seconds between two faults, the first this long after the load starts."""
PARTITION = LEASE.duration + 4
"""Seconds a partition lasts: past the lease, so the other watcher takes over."""
IDENTITIES = ("a", "b")


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevKube]:
    with running_kube(tmp_path_factory.mktemp("kube")) as started:
        yield started


@dataclass
class Pods:
    """What the test did to the API server: the truth."""

    cluster: Cluster
    made: dict[str, tuple[str, str]] = field(default_factory=dict)
    """name -> (uid, ip) of every pod made."""
    deleted: set[str] = field(default_factory=set)
    writes: int = 0

    async def run(self, seconds: float) -> None:
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            name, ip = f"p-{n}", f"10.6.{n // 250}.{n % 250 + 1}"
            made = await self.cluster.pod(name, (ip,))
            self.made[name] = (made.metadata.uid, ip)
            self.writes += 2
            if n % 4 == 3 and n >= 20:
                gone = f"p-{n - 20}"
                await self.cluster.core.delete_namespaced_pod(
                    gone, self.cluster.ns, grace_period_seconds=0
                )
                self.deleted.add(gone)
                self.writes += 1
            n += 1
            await asyncio.sleep(max(0.0, started + n / RATE - time.monotonic()))

    def wrong(self, state: IdentityTables) -> list[str]:
        """Pods whose record on the topics is not what the test left."""
        wrong = []
        for name, (uid, ip) in self.made.items():
            record = state.pods.get(uid)
            if name in self.deleted:
                if record is not None and record.deleted is None:
                    wrong.append(f"{name} deleted, published live")
            elif record is None or record.deleted is not None or record.ips != (ip,):
                wrong.append(f"{name} live at {ip}, published {record}")
        return wrong


async def doubled(settings: Settings, uids: set[str]) -> int:
    """Records of ``uids`` on the pods topic that repeat an earlier one of the same pod.

    A pod here only ever goes from no address to its address to deleted, so a
    value seen again is a record published twice, by one leader or by two."""
    (described,) = await describe_topics(settings.kafka, [PODS.name])
    partitions = [TopicPartition(PODS.name, p) for p in range(described.partitions)]
    consumer = make_consumer(settings.kafka)
    await consumer.start()
    seen: dict[bytes, set[bytes | None]] = {}
    repeats = 0
    try:
        async for message in read_to_end(consumer, partitions):
            key = message.key or b""
            if key.decode() not in uids:
                continue
            values = seen.setdefault(key, set())
            repeats += message.value in values
            values.add(message.value)
    finally:
        await consumer.stop()
    return repeats


class Watchers:
    """The two watcher processes, each reaching the API server through a relay of its own."""

    def __init__(self, start: Callable[[str], subprocess.Popen[bytes]]) -> None:
        self.start = start
        self.processes = {identity: start(identity) for identity in IDENTITIES}

    def kill(self, identity: str) -> None:
        """SIGKILL, then start again at once, as a kubelet restarts a container."""
        self.processes[identity].send_signal(signal.SIGKILL)
        self.processes[identity].wait(10)
        self.processes[identity] = self.start(identity)

    def check(self) -> None:
        for identity, process in self.processes.items():
            assert process.poll() is None, f"watcher {identity} exited with {process.returncode}"

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


async def test_the_watcher_leader_killed_and_partitioned_under_load(
    kube: DevKube,
    settings: Settings,
    report: Callable[[FaultRow], None],
    tmp_path: Path,
) -> None:
    status = kube.status()
    port = int(status.server.rsplit(":", 1)[1])
    ns, lease, cluster_name = (f"{p}-{uuid.uuid4().hex[:6]}" for p in ("faults", "watch", "c"))
    relays = {identity: Relay(port) for identity in IDENTITIES}
    async with admin_client(status) as api:
        await client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
        coordination = client.CoordinationV1Api(api)
        for relay in relays.values():
            await relay.mend()

        def start(identity: str) -> subprocess.Popen[bytes]:
            return start_watcher(
                identity,
                kubeconfig=kubeconfig_via(status, relays[identity].port, tmp_path / identity),
                settings=settings,
                cluster_name=cluster_name,
                lease=lease,
                namespace=ns,
                log=tmp_path / f"{identity}.log",
            )

        watchers = Watchers(start)
        pods = Pods(Cluster(api, ns))
        done: list[str] = []
        try:
            while await holder(coordination, lease, ns) is None:
                await asyncio.sleep(0.1)
            load = asyncio.create_task(pods.run(LOAD_SECONDS))
            for fault in FAULTS:
                await asyncio.sleep(FAULT_EVERY)
                leader = await holder(coordination, lease, ns)
                assert leader in IDENTITIES, f"no leader before the {fault}: {leader!r}"
                if fault == "kill":
                    watchers.kill(leader)
                else:
                    relays[leader].stall()
                    await asyncio.sleep(PARTITION)
                    await relays[leader].mend()
                done.append(f"{fault} {leader}")
                watchers.check()
            await load
            load_ended = time.monotonic()
            wrong = pods.wrong(await topics(settings, cluster_name))
            while wrong and time.monotonic() - load_ended < 120:
                await asyncio.sleep(1)
                wrong = pods.wrong(await topics(settings, cluster_name))
            catch_up = time.monotonic() - load_ended
            watchers.check()
        finally:
            watchers.stop()
            for relay in relays.values():
                await relay.cut()
    repeated = await doubled(settings, {uid for uid, _ in pods.made.values()})
    logs = "\n".join(f"--- {i}\n{(tmp_path / f'{i}.log').read_text()[-3000:]}" for i in IDENTITIES)
    report(
        FaultRow(
            scenario="watcher leader SIGKILLed x2 and partitioned from the API server x2",
            load=f"{RATE:g} pods made/s (and 1 in 4 deleted), 2 watchers",
            records_in=pods.writes,
            expected=len(pods.made),
            seen=len(pods.made) - len(wrong),
            lost=len(wrong),
            doubled=repeated,
            recovery=catch_up if not wrong else None,
        )
    )
    assert not wrong, f"{len(wrong)} pods wrong after {done}: {wrong[:5]}\n{logs}"
    assert repeated == 0, f"{repeated} records repeated after {done}\n{logs}"
