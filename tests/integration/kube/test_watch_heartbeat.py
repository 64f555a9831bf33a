"""The watch leader's heartbeat: the cluster's id (its kube-system UID) on callmap.clusters.v1.

The truth is the API server's own kube-system namespace, read directly.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers.kubewatch import options, running
from kubernetes_asyncio import client

from callmap.broker import make_consumer, read_to_end, topic_partitions
from callmap.config import Settings
from callmap.wire import CLUSTERS, ClusterInfo, decode
from devtools.kube import KubeStatus

pytestmark = [pytest.mark.kube, pytest.mark.kafka]


async def heartbeats(settings: Settings, cluster: str) -> list[ClusterInfo]:
    partitions = await topic_partitions(settings.kafka, [CLUSTERS.name])
    consumer = make_consumer(settings.kafka)
    await consumer.start()
    try:
        found = []
        async for message in read_to_end(consumer, partitions):
            if message.key == cluster.encode() and message.value is not None:
                record = decode(CLUSTERS, message.value)
                assert isinstance(record, ClusterInfo)
                found.append(record)
        return found
    finally:
        await consumer.stop()


async def test_the_leader_beats_with_the_kube_system_uid(
    kube_api: KubeStatus, settings: Settings, admin: client.ApiClient
) -> None:
    kube_system = await client.CoreV1Api(admin).read_namespace("kube-system")
    watch_options = options(kube_api, heartbeat=0.5)
    async with running(settings, watch_options) as watcher:
        deadline = time.monotonic() + 20
        while len(beats := await heartbeats(settings, watch_options.cluster)) < 3:
            assert time.monotonic() < deadline, beats
            await asyncio.sleep(0.5)
        assert watcher.cluster_uid == kube_system.metadata.uid
    assert {beat.uid for beat in beats} == {kube_system.metadata.uid}
    assert {beat.cluster for beat in beats} == {watch_options.cluster}
    assert all(beat.heartbeat == 0.5 and beat.domain == settings.cluster_domain for beat in beats)
    assert len({beat.ts for beat in beats}) == len(beats)  # each one a new beat
    stopped = len(await heartbeats(settings, watch_options.cluster))
    await asyncio.sleep(1.5)
    assert len(await heartbeats(settings, watch_options.cluster)) == stopped  # no leader: silent
