"""One active watcher per cluster: two real ``callmap watch`` processes share a Lease.

The leader is killed with SIGKILL (no chance to release anything) and the
standby must take over within the lease time; the new leader is stopped with
SIGTERM and must release the Lease on its way out.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.identitytopics import eventually
from helpers.kubewatch import Cluster, pod_named
from kubernetes_asyncio import client

from callmap.config import Settings
from devtools.kube import KubeStatus

pytestmark = [pytest.mark.kube, pytest.mark.kafka]

DURATION, RETRY = 3, 0.3


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Watcher processes this test started; any still running at the end are killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def start_watcher(
    identity: str,
    *,
    kube_api: KubeStatus,
    settings: Settings,
    cluster_name: str,
    lease: str,
    namespace: str,
    log: Path,
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "watch", "--kubeconfig", str(kube_api.kubeconfig)]
    command += ["--cluster", cluster_name, "--identity", identity, "--metrics-port", "0"]
    command += ["--lease-name", lease, "--lease-namespace", namespace]
    command += [
        "--lease-duration",
        str(DURATION),
        "--renew-deadline",
        "2",
        "--retry-period",
        str(RETRY),
    ]
    env = os.environ | {
        "CALLMAP_KAFKA_BOOTSTRAP": settings.kafka.bootstrap_servers,
        "CALLMAP_TOPIC_REPLICATION": "1",
        "CALLMAP_TOPIC_PARTITIONS": "3",
    }
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)


async def holder(coordination: client.CoordinationV1Api, lease: str, namespace: str) -> str | None:
    try:
        found = await coordination.read_namespaced_lease(lease, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return found.spec.holder_identity or None


async def wait_for_holder(
    coordination: client.CoordinationV1Api, lease: str, namespace: str, wanted: str | None
) -> float:
    """Seconds until the Lease names ``wanted`` (None: released)."""
    started = time.monotonic()
    while (current := await holder(coordination, lease, namespace)) != wanted:
        assert time.monotonic() - started < 30, f"the Lease still names {current!r}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_a_standby_takes_over_within_the_lease_time_and_a_clean_stop_releases_it(
    kube_api: KubeStatus,
    settings: Settings,
    admin: client.ApiClient,
    cluster: Cluster,
    ns: str,
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    coordination = client.CoordinationV1Api(admin)
    lease, cluster_name = f"watch-{uuid.uuid4().hex[:6]}", f"lease-{uuid.uuid4().hex[:6]}"
    common = {
        "kube_api": kube_api,
        "settings": settings,
        "cluster_name": cluster_name,
        "lease": lease,
        "namespace": ns,
    }
    leader = start_watcher("first", log=tmp_path / "first.log", **common)
    processes.append(leader)
    await wait_for_holder(coordination, lease, ns, "first")
    standby = start_watcher("second", log=tmp_path / "second.log", **common)
    processes.append(standby)

    await asyncio.sleep(DURATION + 1)  # the standby is up and watching the Lease ...
    assert await holder(coordination, lease, ns) == "first"  # ... and does not take it
    assert standby.poll() is None

    leader.send_signal(signal.SIGKILL)
    took = await wait_for_holder(coordination, lease, ns, "second")
    # The standby counts the lease time from when it last saw the Lease change.
    assert took <= DURATION + 2 * RETRY + 1.0, f"took over after {took:.1f}s"
    found = await coordination.read_namespaced_lease(lease, ns)
    assert found.spec.lease_transitions == 1

    await cluster.pod("after-takeover", ("10.4.0.1",))  # published by the new leader
    await eventually(
        settings, cluster_name, lambda state: pod_named(state, ns, "after-takeover"), timeout=30
    )

    standby.send_signal(signal.SIGTERM)
    released = await wait_for_holder(coordination, lease, ns, None)
    assert released < 10
    assert standby.wait(15) == 0, (tmp_path / "second.log").read_text()
    assert "released lease" in (tmp_path / "second.log").read_text()
