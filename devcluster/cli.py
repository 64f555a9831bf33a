"""``callmap dev cluster ...``: a real Kubernetes cluster on this machine (root).

``start`` builds what is missing and brings up the nodes, the control plane,
CoreDNS and the cluster's Kafka broker; ``install`` puts callmap in with its
Helm chart; ``status`` says what runs; ``stop`` takes it all down.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import click
import yaml
from rich.console import Console

from devcluster.cluster import REPO, DevCluster, fetch
from devcluster.errors import DevClusterError

console = Console()
T = TypeVar("T")

_name = click.option("--name", default="dev", show_default=True, help="Cluster name.")


@click.group()
def cluster() -> None:
    """A real Kubernetes cluster on this machine: kubelets, containerd, CoreDNS, kube-proxy."""


@cluster.command()
@_name
@click.option("--nodes", default=2, show_default=True, help="How many nodes (1 to 8).")
def start(name: str, nodes: int) -> None:
    """Start the cluster (building binaries and images the first time); idempotent."""
    status = _run(lambda: DevCluster.named(name, nodes).start())
    console.print(f"cluster {name} running: nodes {', '.join(status.nodes)}")
    console.print(f"  use it with: export KUBECONFIG={status.kubeconfig}", soft_wrap=True)
    console.print(f"  Kafka for its pods and this machine: {status.kafka_bootstrap}")


@cluster.command("fetch")
def fetch_command() -> None:
    """Build every binary and image the cluster needs into the cache (once; minutes)."""
    built = _run(fetch)
    for name, path in sorted(built.kube.items()):
        console.print(f"{name} in {path}", soft_wrap=True)
    for role, reference in sorted(built.references.items()):
        console.print(f"image {role}: {reference}")


@cluster.command()
@_name
@click.option("--set", "assignments", multiple=True, help="A chart value, KEY=VALUE (dotted keys).")
def install(name: str, assignments: tuple[str, ...]) -> None:
    """Install callmap into the cluster with its Helm chart and the image built here."""
    overrides: dict[str, object] = {}
    for assignment in assignments:
        key, _, value = assignment.partition("=")
        level = overrides
        *parents, last = key.split(".")
        for part in parents:
            level = level.setdefault(part, {})  # type: ignore[assignment]
        level[last] = yaml.safe_load(value)  # as helm --set reads it: 2 is a number
    report = _run(lambda: DevCluster.named(name).install_callmap(REPO, overrides))
    console.print(report)


@cluster.command()
@_name
def status(name: str) -> None:
    """Say whether the cluster runs; exit 1 if it does not."""
    state = DevCluster.named(name).status()
    console.print(f"cluster {name}: {state.detail}")
    console.print(f"  kubeconfig: {state.kubeconfig}", soft_wrap=True)
    if not state.running:
        sys.exit(1)


@cluster.command()
@_name
def stop(name: str) -> None:
    """Stop every process of the cluster and remove its namespaces, links and cgroups."""
    stopped = _run(lambda: DevCluster.named(name).stop())
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


def _run(action: Callable[[], T]) -> T:
    try:
        return action()
    except DevClusterError as exc:
        console.print(f"callmap dev cluster: {exc}")
        sys.exit(1)
