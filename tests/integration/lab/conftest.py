"""Fixtures of the lab's integration tests (helpers live in labfixtures.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.kafkakit import own_broker
from helpers.kubeapi import require_kube_binaries
from helpers.labfixtures import skip_without_root, unique_name, write_topology

from callmap.config import Settings
from devtools.kube import binaries_built
from lab.runtime import up
from lab.state import LabState
from lab.teardown import DownReport, down

# Two nodes, dual stack: a service with two replicas on the other node, a
# StatefulSet behind a headless service, an ExternalName, an external whose
# answer is too big for UDP, and a host-network agent.
BIG_ANSWER = ", ".join(f"203.0.113.{100 + i}" for i in range(40))
NETWORK = f"""
nodes: [node-a, node-b]
dual_stack: true
workloads:
  - {{namespace: web, name: client, node: node-a}}
  - {{namespace: api, name: server, replicas: 2, node: node-b,
     service: {{name: server, ports: [8080]}}}}
  - {{namespace: data, name: db, kind: StatefulSet, replicas: 2,
     service: {{name: db, ports: [5432], headless: true}}}}
  - {{namespace: ops, name: agent, kind: DaemonSet, host_network: true}}
services:
  - {{namespace: web, name: pay, external_name: api.stripe.com}}
externals:
  - {{name: api.stripe.com, ips: [203.0.113.10, "2001:db8:10::10"], ports: [443]}}
  - {{name: big.example.com, ports: [443], ips: [{BIG_ANSWER}]}}
calls:
  - {{from: web/client, to: server.api, port: 8080, rate: 4}}
  - {{from: web/client, to: db-1.db.data, port: 5432}}
  - {{from: web/client, to: pay, port: 443}}
  - {{from: web/client, to: big.example.com, port: 443}}
  - {{from: ops/agent, to: server.api, port: 8080}}
"""


@dataclass(frozen=True)
class RunningLab:
    state: LabState
    topology: Path
    state_dir: Path
    seconds_to_ready: float

    def pod_netns(self, workload: str) -> list[str]:
        return [p.netns for p in self.state.live_pods() if p.workload == workload]


@pytest.fixture(scope="module")
def network_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    skip_without_root()
    folder = tmp_path_factory.mktemp("lab")
    name = unique_name("itnet")
    topology = write_topology(folder, name, NETWORK)
    state_dir = folder / "state"
    started = time.monotonic()
    state = up(topology, state_dir, dns_log=True)
    try:
        yield RunningLab(state, topology, state_dir, time.monotonic() - started)
    finally:
        report: DownReport = down(name, state_dir)
        assert not report.left, report


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The end-to-end runs' stream apps read from the start: a broker of their own."""
    with own_broker(tmp_path_factory) as own:
        yield own


# A cold build of kube-apiserver and etcd on two cores (see docs/development.md).
KUBE_BUILD_TIMEOUT = 3600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if binaries_built():
        return
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents and item.get_closest_marker("kube"):
            item.add_marker(pytest.mark.timeout(KUBE_BUILD_TIMEOUT))


@pytest.fixture(scope="session")
def kube_binaries() -> None:
    """kube-apiserver and etcd for `--kubernetes` labs: built here once if missing
    (skipped, or failed with CALLMAP_REQUIRE_KUBE=1, when they cannot be)."""
    require_kube_binaries()
