"""One active watcher per cluster: two real ``callmap watch`` processes share a Lease.

The leader is killed with SIGKILL (no chance to release anything) and the
standby must take over within the lease time; the new leader is stopped with
SIGTERM and must release the Lease on its way out.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.identitytopics import eventually
from helpers.kubewatch import LEASE, Cluster, holder, pod_named, start_watcher, wait_for_holder
from kubernetes_asyncio import client

from callmap.config import Settings
from devtools.kube import KubeStatus

pytestmark = [pytest.mark.kube, pytest.mark.kafka]

DURATION, RETRY = LEASE.duration, LEASE.retry


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Watcher processes this test started; any still running at the end are killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)


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
        "kubeconfig": kube_api.kubeconfig,
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
    # The standby counts the lease time from when it last saw the Lease change; 2 s of
    # slack for a loaded machine (a clean-clone run on 2026-12-07 took 5.0 s: 3 + 0.6 + 1.4).
    assert took <= DURATION + 2 * RETRY + 2.0, f"took over after {took:.1f}s"
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
