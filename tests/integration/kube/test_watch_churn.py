"""Churn: after create, relabel, delete and recreate, the compacted topics hold the current state.

Reading a compacted topic from the start is how the stream app (and anyone)
learns who holds which IP, so these tests check exactly that view, and the
order in which one key's messages arrived.
"""

from __future__ import annotations

import time
import uuid

import pytest
from helpers.identitytopics import eventually, history
from helpers.kubewatch import Cluster, options, pod_named, pods_in, running, service_named, until

from callmap.config import Settings
from callmap.wire import PODS
from devtools.kube import KubeStatus
from watch.identitytable import IdentityTables
from watch.options import WatchTimeouts

pytestmark = [pytest.mark.kube, pytest.mark.kafka]

IP = "10.2.0.5"


async def test_create_relabel_delete_recreate_with_the_same_ip(
    kube_api: KubeStatus, settings: Settings, cluster: Cluster, ns: str
) -> None:
    watch_options = options(kube_api, retention=1.0)
    name = watch_options.cluster
    async with running(settings, watch_options):
        first = await cluster.pod("api-1", (IP,), labels={"app": "api"})
        old = first.metadata.uid

        def labelled(state: IdentityTables) -> None:
            assert pod_named(state, ns, "api-1").labels == {"app": "api-v2"}

        await eventually(settings, name, lambda state: pod_named(state, ns, "api-1"))
        patch = {"metadata": {"labels": {"app": "api-v2"}}}
        await cluster.core.patch_namespaced_pod("api-1", ns, patch)
        await eventually(settings, name, labelled)

        await cluster.core.delete_namespaced_pod("api-1", ns, grace_period_seconds=0)
        second = await cluster.pod("api-1", (IP,), labels={"app": "api"})  # the same name and IP

        await cluster.service("api", ports=[{"port": 80}])
        await cluster.core.delete_namespaced_service("api", ns)
        await cluster.service("api", ports=[{"port": 8080}])

        node = f"node-{uuid.uuid4().hex[:6]}"
        await cluster.core.create_node({"metadata": {"name": node}})
        await cluster.core.delete_node(node)

        def settled(state: IdentityTables) -> None:
            assert state.pods.get(old) is None  # tombstoned after the retention
            pods = pods_in(state, ns)
            assert len(pods) == 1, sorted(pods)
            (pod,) = pods.values()
            assert (pod.uid, pod.ips, pod.deleted) == (second.metadata.uid, (IP,), None)
            api = service_named(state, ns, "api")
            assert [p.port for p in api.ports] == [8080] and api.deleted is None
            assert state.nodes.get(node) is None

        await eventually(settings, name, settled)

    # A pod is created first and given its IP after (a kubelet's status write): a
    # watcher that sees it in between publishes it once without an IP, too.
    messages = [m for m in await history(settings, PODS, old) if m is None or m.ips]
    assert [m.labels["app"] if m else None for m in messages] == ["api", "api-v2", "api-v2", None]
    deleted = messages[2]
    assert deleted is not None and deleted.deleted is not None  # deleted, then (1 s later) gone
    assert deleted.deleted <= time.time()


async def test_what_vanished_while_no_watcher_ran_gets_its_deletion_record(
    kube_api: KubeStatus, settings: Settings, cluster: Cluster, ns: str
) -> None:
    watch_options = options(kube_api)
    name = watch_options.cluster
    stays = await cluster.pod("stays", ("10.2.1.1",))
    goes = await cluster.pod("goes", ("10.2.1.2",))
    await cluster.service("goes")
    async with running(settings, watch_options):

        def published(state: IdentityTables) -> None:
            assert len(pods_in(state, ns)) == 2 and service_named(state, ns, "goes")

        await eventually(settings, name, published)

    await cluster.core.delete_namespaced_pod("goes", ns, grace_period_seconds=0)
    await cluster.core.delete_namespaced_service("goes", ns)

    async with running(settings, watch_options):  # a new watcher: a new leader, say

        def reconciled(state: IdentityTables) -> None:
            gone = state.pods.get(goes.metadata.uid)
            assert gone is not None and gone.deleted is not None
            assert service_named(state, ns, "goes").deleted is not None
            assert pod_named(state, ns, "stays").deleted is None

        await eventually(settings, name, reconciled)

    # The new leader adopted what the topics held: it did not publish the unchanged pod again.
    assert len(await history(settings, PODS, stays.metadata.uid)) == 1


async def test_a_finished_pod_no_longer_holds_its_ip(
    kube_api: KubeStatus, settings: Settings, cluster: Cluster, ns: str
) -> None:
    watch_options = options(kube_api)
    async with running(settings, watch_options):
        await cluster.pod("once-1", ("10.2.2.1",))
        await cluster.status("once-1", ("10.2.2.1",), phase="Succeeded")

        def finished(state: IdentityTables) -> None:
            pod = pod_named(state, ns, "once-1")
            assert pod.deleted is not None and pod.ips == ("10.2.2.1",)

        await eventually(settings, watch_options.cluster, finished)


async def test_an_inactive_watch_is_restarted_and_keeps_delivering(
    kube_api: KubeStatus, settings: Settings, cluster: Cluster, ns: str
) -> None:
    timeouts = WatchTimeouts(inactivity_timeout=0.7, watch_timeout=60)
    watch_options = options(kube_api, timeouts=timeouts)
    async with running(settings, watch_options) as watcher:
        pods = watcher.reflectors["pods"]
        await until(lambda: pods.restarts["inactive"] >= 2)
        assert pods.lists == 1  # restarted from where it was, not listed again
        await cluster.pod("late-1", ("10.2.3.1",))
        await eventually(settings, watch_options.cluster, lambda s: pod_named(s, ns, "late-1"))
