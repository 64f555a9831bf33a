"""``DevCluster``: a real Kubernetes cluster on this machine, started, described and stopped.

:meth:`DevCluster.start` builds what is missing (Kubernetes' commands, etcd,
the images), then brings the cluster up in order: the network, the cluster's
Kafka broker on the host's fabric address, the internet, the control plane,
the nodes (their images imported into each containerd), CoreDNS; it returns
once every node is Ready and DNS answers. Starting again is harmless.
:meth:`DevCluster.stop` takes it down in reverse order and leaves no process,
mount, interface, rule or cgroup behind (it signals only what it recorded).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from callmap.paths import cache_dir
from devcluster import addons, images, install, network
from devcluster.controlplane import ControlPlane, build_binaries
from devcluster.errors import DevClusterError
from devcluster.internet import Internet
from devcluster.layout import (
    CLUSTER_DOMAIN,
    HOST_ADDRESS,
    KAFKA_PORT,
    ClusterLayout,
    plan_cluster,
)
from devcluster.node import Node, NodeBinaries, write_node_files
from devtools.kafka import DevBroker
from devtools.kube import build_components
from devtools.kube import fetch as fetch_apiserver
from devtools.process import locked

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    running: bool
    detail: str
    kubeconfig: Path
    kafka_bootstrap: str
    nodes: tuple[str, ...]
    images: dict[str, str] = field(default_factory=dict)
    cluster_domain: str = CLUSTER_DOMAIN
    directory: Path = Path()


@dataclass(frozen=True, slots=True)
class DevCluster:
    """A cluster's directory (its state, logs, certificates) and size."""

    directory: Path
    name: str = "dev"
    node_count: int = 2

    @classmethod
    def named(cls, name: str = "dev", node_count: int = 2) -> DevCluster:
        return cls(cache_dir() / "cluster" / name, name, node_count)

    @property
    def layout(self) -> ClusterLayout:
        return plan_cluster(self.name, self.directory, self._recorded_node_count())

    @property
    def control_plane(self) -> ControlPlane:
        return ControlPlane(self.layout)

    @property
    def broker(self) -> DevBroker:
        return DevBroker(self.directory / "kafka", KAFKA_PORT, host=HOST_ADDRESS)

    @property
    def internet(self) -> Internet:
        return Internet(self.layout)

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.api.kubeconfig

    def nodes(self) -> list[Node]:
        layout = self.layout
        return [Node(layout, node) for node in layout.nodes]

    # -- life cycle -------------------------------------------------------------------------

    def start(self, timeout: float = 300.0) -> ClusterStatus:
        self.directory.mkdir(parents=True, exist_ok=True)
        with locked(self.directory / ".lock"):
            if self.status().running:
                return self.status()
            built = fetch()
            layout = plan_cluster(self.name, self.directory, self.node_count)
            self._write_state({"node_count": self.node_count, "images": built.references})
            if not network.netns_exists(layout.fabric_netns):
                network.create_network(layout)
            self.broker.start()
            self.internet.start()
            self.control_plane.start(built.kube)
            pki = self.control_plane.pki
            node_binaries = NodeBinaries(built.kube["kubelet"], built.kube["kube-proxy"])
            for node in self.nodes():
                write_node_files(layout, node.node, pki, built.references["pause"], node_binaries)
                node.start()
            for node in self.nodes():
                socket = node.containerd_socket
                _wait_for(socket.exists, timeout, f"containerd on {node.node.name}")
                for archive in built.images:
                    images.import_image(archive, socket)
            self.kubectl("wait", "--for=condition=Ready", "node", "--all", f"--timeout={timeout}s")
            for planned in layout.nodes:  # what the node's CNI hands out, as tools read it
                name, cidr = planned.name, str(planned.pod_range)
                spec = {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}
                if not self.kubectl("get", "node", name, "-o", "jsonpath={.spec.podCIDR}"):
                    self.kubectl("patch", "node", name, "--type=merge", "-p", json.dumps(spec))
            self.apply(addons.coredns_objects(built.references["coredns"]))
            self.kubectl(
                "-n", addons.NAMESPACE, "rollout", "status", "deployment/coredns",
                f"--timeout={timeout}s",
            )  # fmt: skip
            return self.status()

    def stop(self) -> list[str]:
        """Take everything down; what was stopped or removed."""
        stopped = []
        layout = self.layout
        for node in self.nodes():
            if node.stop():
                stopped.append(node.node.name)
        if self.control_plane.stop():
            stopped.append("control plane")
        if self.internet.stop():
            stopped.append("internet")
        if self.broker.stop():
            stopped.append("kafka")
        stopped += network.remove_network(layout)
        return stopped

    def status(self) -> ClusterStatus:
        layout = self.layout
        state = self._state()
        running_nodes = [node.node.name for node in self.nodes() if node.init_pid() is not None]
        api = self.control_plane.api.status()
        problems = []
        if not api.running:
            problems.append(f"API server {api.detail}")
        if not self.broker.status().running:
            problems.append("Kafka not running")
        missing = [n.name for n in layout.nodes if n.name not in running_nodes]
        if missing:
            problems.append(f"nodes down: {', '.join(missing)}")
        return ClusterStatus(
            running=not problems,
            detail="running" if not problems else "; ".join(problems),
            kubeconfig=self.kubeconfig,
            kafka_bootstrap=layout.kafka_bootstrap,
            nodes=tuple(n.name for n in layout.nodes),
            images=dict(state.get("images", {})),
            directory=self.directory,
        )

    def set_externals(
        self, zone: Mapping[str, Sequence[str]], ports: Mapping[str, Sequence[int]]
    ) -> None:
        """The internet answers these names (name -> addresses) and serves these ports."""
        self.internet.set_externals(zone, ports)

    def install_callmap(self, repo: Path, overrides: Mapping[str, Any] = {}) -> str:
        """``helm install`` the chart (:mod:`devcluster.install`); Helm's report."""
        status = self.status()
        if not status.running:
            raise DevClusterError(f"the cluster is not running ({status.detail})")
        image = self.current_callmap_image(repo)
        values = install.chart_values(image, status.kafka_bootstrap, self.name, overrides)
        return install.helm_install(repo, self.kubeconfig, values, self.directory / "helm")

    def current_callmap_image(self, repo: Path) -> str:
        """callmap's image of the tree as it is now: built if the tree changed since the
        cluster started, imported into every node, and recorded as the cluster's."""
        archive = images.callmap_image(repo)
        for node in self.nodes():
            images.import_image(archive, node.containerd_socket)
        state = self._state()
        state.setdefault("images", {})["callmap"] = archive.reference
        self._write_state(state)
        return archive.reference

    def uninstall_callmap(self) -> None:
        """``helm uninstall`` callmap's release (harmless when it is not installed).

        The watcher's Lease goes too: Helm removes the watcher's RBAC with its
        Deployment, so the leader cannot release the Lease as it stops, and the
        next install's watcher would wait out the lease duration before leading.
        """
        install.helm_uninstall(self.kubeconfig)
        self.kubectl("-n", install.NAMESPACE, "delete", "lease", "--all")  # only callmap's there

    # -- talking to it ----------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        """Run the cluster's kubectl as its administrator; its output."""
        binary = build_components(("kubectl",))["kubectl"]  # built with the rest; a stat here
        command = [str(binary), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise DevClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def apply(self, objects: Sequence[Mapping[str, Any]]) -> None:
        """Server-side apply, as the field manager ``callmap-dev``."""
        text = yaml.safe_dump_all([dict(o) for o in objects], sort_keys=False)
        self.kubectl("apply", "--server-side", "--field-manager=callmap-dev", "-f", "-", stdin=text)

    # -- internals --------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads((self.directory / "state.json").read_text())
        except (OSError, ValueError):
            return {}
        return state

    def _write_state(self, state: dict[str, Any]) -> None:
        (self.directory / "state.json").write_text(json.dumps(state, indent=2))

    def _recorded_node_count(self) -> int:
        return int(self._state().get("node_count", self.node_count))


def fetch() -> Built:
    """Everything a cluster runs, built once and cached: Kubernetes' commands, etcd, images."""
    missing = [tool for tool in ("containerd", "ctr", "unshare", "nft") if not shutil.which(tool)]
    if missing:
        raise DevClusterError(f"missing on this machine: {', '.join(missing)} (see the Makefile)")
    fetch_apiserver()
    return Built(build_binaries(), images.build_all(REPO))


@dataclass(frozen=True, slots=True)
class Built:
    kube: dict[str, Path]
    images: images.ClusterImages

    @property
    def references(self) -> dict[str, str]:
        return self.images.references


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise DevClusterError(f"gave up waiting for {what} after {timeout:.0f}s")
        time.sleep(0.2)
