"""`callmap lab` commands that need no root: truth, plan, and usage errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers.labplans import TOPOLOGY_DIR

from lab.cli import lab


def test_truth_prints_one_edge_per_line() -> None:
    result = CliRunner().invoke(lab, ["truth", str(TOPOLOGY_DIR / "two-clients.yaml")])
    assert result.exit_code == 0
    assert "web/client-a -> api/server" in result.output.splitlines()


def test_truth_as_json_has_edges_and_tolerated() -> None:
    result = CliRunner().invoke(lab, ["truth", "--json", str(TOPOLOGY_DIR / "churn.yaml")])
    document = json.loads(result.output)
    assert {"client": "ops/prober", "server": "shop/emailservice"} in document["edges"]
    assert document["tolerated"]
    assert {
        "client": "ops/prober",
        "server": "shop/emailservice",
        "ports": [7070],
        "udp_ports": [],
    } in document["ports"]


def test_plan_shows_addresses_and_pods_created_by_churn() -> None:
    result = CliRunner().invoke(lab, ["plan", str(TOPOLOGY_DIR / "churn.yaml")])
    assert result.exit_code == 0
    assert "10.244.0.4  (created by churn)" in result.output
    assert "service kube-system/kube-dns (ClusterIP): 10.96.0.10" in result.output


def test_a_bad_topology_fails_with_the_key_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nworkloads: [{namespace: a, name: w, replica: 2}]\n")
    result = CliRunner().invoke(lab, ["truth", str(bad)])
    assert result.exit_code == 1
    assert "workloads[0]: unknown key 'replica'" in result.output


def test_down_needs_a_name_or_all() -> None:
    result = CliRunner().invoke(lab, ["down"])
    assert result.exit_code == 2 and "give a lab NAME or --all" in result.output


@pytest.fixture
def removed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """What `lab down` asks the teardown to remove: (lab name, state dir)."""
    from lab import teardown

    asked: list[tuple[str, object]] = []
    monkeypatch.setattr(teardown, "down", lambda name, state_dir: asked.append((name, state_dir)))
    return asked


def test_down_of_a_multi_cluster_file_removes_each_clusters_lab(
    removed: list[tuple[str, object]],
) -> None:
    from lab.multitopology import load_multi

    clusters = TOPOLOGY_DIR / "clusters.yaml"
    result = CliRunner().invoke(lab, ["down", str(clusters), "--state-dir", "/nowhere"])
    assert result.exit_code == 0, result.output
    members = [t.name for t in load_multi(clusters).members.values()]
    assert len(members) == 3 and removed == [(name, None) for name in members]


def test_down_of_a_topology_file_removes_its_lab_only(removed: list[tuple[str, object]]) -> None:
    result = CliRunner().invoke(lab, ["down", str(TOPOLOGY_DIR / "shop.yaml")])
    assert result.exit_code == 0, result.output
    assert removed == [("shop", None)]


def test_up_refuses_hold_with_foreground() -> None:
    result = CliRunner().invoke(
        lab, ["up", "--hold", "--foreground", str(TOPOLOGY_DIR / "shop.yaml")]
    )
    assert result.exit_code == 2 and "cannot --hold" in result.output


def test_kubernetes_without_the_api_server_binaries_says_to_fetch_them(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from lab import kubelab, runtime

    monkeypatch.setattr(runtime, "check_host", lambda: None)
    monkeypatch.setattr(kubelab, "binaries_built", lambda: False)
    result = CliRunner().invoke(lab, ["up", "--kubernetes", str(TOPOLOGY_DIR / "shop.yaml")])
    assert result.exit_code == 1
    assert "run `callmap dev kube fetch` once" in result.output
