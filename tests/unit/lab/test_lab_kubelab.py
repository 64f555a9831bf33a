"""The lab's own API server: its service ranges, and what --kubernetes says when it cannot run."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from helpers.labplans import SINGLE_CLUSTER, TOPOLOGY_DIR, bundled

from devtools.kube import apiserver_command
from lab import kubelab
from lab.errors import LabError
from lab.pipeline import watch_args
from lab.state import DnsState, KubeState, LabState


@pytest.mark.parametrize("name", SINGLE_CLUSTER)
def test_every_planned_cluster_ip_lies_in_the_lab_api_servers_service_ranges(name: str) -> None:
    ranges = [ipaddress.ip_network(cidr) for cidr in kubelab.SERVICE_CIDRS]
    ips = [ip for service in bundled(name).services for ip in service.cluster_ips]
    assert ips
    for ip in ips:
        assert any(ipaddress.ip_address(ip) in network for network in ranges), ip
    # The API server's own `kubernetes` Service takes the first address: no lab service may.
    assert str(ranges[0].network_address + 1) not in ips


def test_the_api_server_is_started_with_both_service_ranges(tmp_path: Path) -> None:
    command = apiserver_command(
        Path("/bin/kube-apiserver"), tmp_path, 6443, 2379, kubelab.SERVICE_CIDRS
    )
    assert "--service-cluster-ip-range=10.96.0.0/16,fd00:96::/108" in command


def test_without_the_binaries_kubernetes_mode_says_how_to_build_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kubelab, "binaries_built", lambda: False)
    with pytest.raises(LabError, match=r"run `callmap dev kube fetch` once"):
        kubelab.require_binaries()
    monkeypatch.setattr(kubelab, "binaries_built", lambda: True)
    kubelab.require_binaries()


def _state(kube: KubeState | None) -> LabState:
    return LabState(
        name="shop",
        prefix="cml-shop--",
        topology=str(TOPOLOGY_DIR / "shop.yaml"),
        state_dir="/state",
        cluster="shop",
        domain="cluster.local",
        created=0.0,
        inventory="/state/inventory.yaml",
        fabric_netns="cml-shop--fabric",
        internet_netns="cml-shop--internet",
        nft_table="cml-shop",
        dns=DnsState(service_ips=[], pod="", pod_ips=[], netns="", pid=0, log=""),
        nodes=[],
        pods=[],
        processes=[],
        kube=kube,
    )


def test_lab_run_watches_the_labs_api_server_keeping_the_topologys_labels() -> None:
    kube = KubeState(
        server="https://127.0.0.1:1", kubeconfig="/state/kube/kubeconfig", directory=""
    )
    args = watch_args(_state(kube), "shop-1a2b3c")
    assert args[:4] == ["--kubeconfig", "/state/kube/kubeconfig", "--cluster", "shop-1a2b3c"]
    assert "--inventory" not in args and "--no-leader-election" not in args  # a real Lease
    labels = [args[i + 1] for i, arg in enumerate(args) if arg == "--label"]
    assert labels == ["k8s-app", "app"]  # the DNS pod's, then the shop's


def test_without_an_api_server_lab_run_watches_the_inventory_file() -> None:
    args = watch_args(_state(None), "shop-1a2b3c")
    assert args[:2] == ["--inventory", "/state/inventory.yaml"]
    assert "--no-leader-election" in args and "--kubeconfig" not in args
