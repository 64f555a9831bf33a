"""A watcher that missed changes lists again and publishes each change once: after etcd
compacted the versions it had (410 Gone), and across an API server restart.

Both run against API servers of their own (real kube-apiserver and etcd), so
that they can be cut off, compacted and restarted without touching the
session's. What the topics must hold comes from the changes the test made,
read back from Kafka message by message (a second copy of a record is a
duplicate even though compaction would hide it).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.identitytopics import eventually, history
from helpers.kubeapi import running_kube
from helpers.kubewatch import (
    Cluster,
    admin_client,
    kubeconfig_via,
    options,
    pod_named,
    pods_in,
    running,
)
from helpers.tcpcut import Relay
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from callmap.config import Settings
from callmap.wire import PODS
from devtools.kube import DevKube
from watch.identitytable import IdentityTables
from watch.options import KubeSource, WatchTimeouts

pytestmark = [pytest.mark.kube, pytest.mark.kafka]

QUICK = WatchTimeouts(initial_backoff=0.2, max_backoff=1.0)
"""Retry soon after a fault, so the tests wait for the relist, not for a backoff."""


@pytest.fixture(scope="module")
def compacting_kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevKube]:
    """An API server whose etcd is compacted every second, without a watch cache: a watch
    from a version older than a second or two is refused with 410, as a watch from one
    older than the cache's window is in a cluster (where that takes minutes)."""
    flags = ("--watch-cache=false", "--etcd-compaction-interval=1s")
    with running_kube(tmp_path_factory.mktemp("kube-compacting"), extra_args=flags) as kube:
        yield kube


@pytest.fixture(scope="module")
def restartable_kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevKube]:
    """An API server with a cluster's defaults, to restart."""
    with running_kube(tmp_path_factory.mktemp("kube-restarted")) as kube:
        yield kube


class Changes:
    """Three pods before the fault, and what happens to them while the watcher is away:
    one stays as it is, one goes, one is relabelled, and a fourth comes."""

    def __init__(self) -> None:
        self.ns = f"relist-{uuid.uuid4().hex[:8]}"
        self.uids: dict[str, str] = {}

    async def before(self, api: client.ApiClient) -> None:
        await client.CoreV1Api(api).create_namespace({"metadata": {"name": self.ns}})
        cluster = Cluster(api, self.ns)
        for name, ip, app in (("stays", "10.3.0.1", "a"), ("goes", "10.3.0.2", "a")):
            self.uids[name] = (await cluster.pod(name, (ip,), labels={"app": app})).metadata.uid
        moves = await cluster.pod("moves", ("10.3.0.3",), labels={"app": "v1"})
        self.uids["moves"] = moves.metadata.uid

    async def during(self, api: client.ApiClient) -> None:
        cluster = Cluster(api, self.ns)
        await cluster.core.delete_namespaced_pod("goes", self.ns, grace_period_seconds=0)
        patch = {"metadata": {"labels": {"app": "v2"}}}
        await cluster.core.patch_namespaced_pod("moves", self.ns, patch)
        self.uids["comes"] = (await cluster.pod("comes", ("10.3.0.4",))).metadata.uid

    def published_before(self, state: IdentityTables) -> None:
        assert sorted(pods_in(state, self.ns)) == ["goes", "moves", "stays"]

    def published_after(self, state: IdentityTables) -> None:
        # pod_named asserts: a pod not published yet is a reason to wait, not an error
        assert pod_named(state, self.ns, "goes").deleted is not None
        assert pod_named(state, self.ns, "moves").labels == {"app": "v2"}
        comes = pod_named(state, self.ns, "comes")
        assert comes.ips == ("10.3.0.4",) and comes.deleted is None
        assert pod_named(state, self.ns, "stays").deleted is None

    async def check_each_published_once(self, settings: Settings, *, unseen: bool) -> None:
        """Nothing doubled: the unchanged pod once, each change once. ``unseen``: the
        watcher could not see the changes as they were made (else it may also publish
        the new pod between its creation and its status write, without an address)."""
        stays = await history(settings, PODS, self.uids["stays"])
        assert len(stays) == 1, stays
        moves = await history(settings, PODS, self.uids["moves"])
        assert [m.labels["app"] if m else None for m in moves] == ["v1", "v2"], moves
        comes = await history(settings, PODS, self.uids["comes"])
        if not unseen:
            comes = [m for m in comes if m is None or m.ips]
        assert len(comes) == 1, comes
        goes = await history(settings, PODS, self.uids["goes"])
        assert [m is not None and m.deleted is not None for m in goes] == [False, True], goes


async def refuses_watch_from(api: client.ApiClient, ns: str, version: str) -> bool:
    """True if a watch of ``ns``'s pods from ``version`` is refused with 410."""
    core = client.CoreV1Api(api)
    try:
        response = await core.list_namespaced_pod(
            ns, watch=True, resource_version=version, timeout_seconds=1, _preload_content=False
        )
    except ApiException as exc:
        return exc.status == 410
    async with response:
        body = await response.read()
    return b'"code":410' in body


async def test_changes_compacted_away_while_cut_off_arrive_by_a_relist(
    compacting_kube: DevKube, settings: Settings, tmp_path: Path
) -> None:
    status = compacting_kube.status()
    port = int(status.server.rsplit(":", 1)[1])
    changes = Changes()
    async with admin_client(status) as api, Relay(port) as relay:
        await changes.before(api)
        relayed = kubeconfig_via(status, relay.port, tmp_path / "relayed.kubeconfig")
        source = KubeSource(kubeconfig=str(relayed))
        watch_options = options(status, source=source, timeouts=QUICK)
        cluster = watch_options.cluster
        async with running(settings, watch_options) as watcher:
            await eventually(settings, cluster, changes.published_before)
            await relay.cut()
            version = watcher.reflectors["pods"].version
            assert version is not None
            await changes.during(api)
            for _ in range(60):  # the premise: the versions the watcher holds are gone
                if await refuses_watch_from(api, changes.ns, version):
                    break
                await asyncio.sleep(0.5)
            else:
                pytest.fail(f"etcd was not compacted past {version} within 30 s")
            await relay.mend()
            await eventually(settings, cluster, changes.published_after, timeout=30)
            assert watcher.restarts()["pods"]["gone"] >= 1
    await changes.check_each_published_once(settings, unseen=True)


async def test_an_api_server_restart_loses_nothing_and_doubles_nothing(
    restartable_kube: DevKube, settings: Settings
) -> None:
    status = restartable_kube.status()
    changes = Changes()
    async with admin_client(status) as api:
        await changes.before(api)
    watch_options = options(status, timeouts=QUICK)
    cluster = watch_options.cluster
    async with running(settings, watch_options) as watcher:
        await eventually(settings, cluster, changes.published_before)
        await asyncio.to_thread(restartable_kube.restart_apiserver)
        async with admin_client(status) as api:  # at once, racing the watcher's return
            await changes.during(api)
        await eventually(settings, cluster, changes.published_after, timeout=30)
        noticed = watcher.restarts()["pods"]
        assert sum(noticed.values()) >= 1, "the watcher never saw the server go"
    await changes.check_each_published_once(settings, unseen=False)
