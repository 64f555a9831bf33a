"""End to end on real nodes: bundled labs run on the development cluster, against their truth.

``lab run --on cluster`` deploys the topology as real Deployments,
StatefulSets, DaemonSets and Services whose pods resolve through CoreDNS and
connect through kube-proxy; callmap runs as its Helm chart installs it; the
truth comes from each caller's own log of its calls and what the API server
held at the time, in code that shares nothing with callmap's rules
(lab/clustertruth.py). One run each, no retry: an imperfect run fails and
prints its report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devcluster.cluster import DevCluster
from lab.clusterrun import run_on_cluster
from lab.pipeline import RunOptions
from lab.topology import load_topology

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.timeout(900)]

TOPOLOGIES = Path(__file__).resolve().parents[3] / "lab" / "topologies"


@pytest.mark.parametrize("name", ["shop", "churn", "statefulset", "long-lived"])
def test_the_map_of_real_pods_matches_their_own_log(
    dev_cluster: DevCluster, tmp_path: Path, name: str
) -> None:
    topology = TOPOLOGIES / f"{name}.yaml"
    options = RunOptions(seconds=240, state_dir=tmp_path)
    result = run_on_cluster(topology, options, cluster=dev_cluster)
    report = result.as_json()
    print(json.dumps({k: report[k] for k in ("precision", "recall", "truth_notes")}))
    assert result.comparison.perfect, json.dumps(report, indent=1)
    assert result.truth.calls > 0 and report["truth_notes"] == []
    # Ports come from socket scans, which always see a long-lived connection.
    ports = report["ports"]
    observed = {(e["client"], e["server"]): set(e["ports"]) for e in ports["observed"]}
    for call in load_topology(topology).calls:
        if call.long_lived:
            edges = [
                (e["client"], e["server"])
                for e in ports["expected"]
                if e["client"] == call.client and call.port in e["ports"]
            ]
            assert edges, f"no true edge for the long-lived call {call}"
            for edge in edges:
                assert call.port in observed.get(edge, set()), (edge, call.port, observed)
