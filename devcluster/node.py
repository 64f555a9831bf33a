"""One node of the development cluster: its files, and its namespaces' process 1.

A node is a set of namespaces of this machine: the network namespace
:mod:`devcluster.network` built, plus mount, UTS and PID namespaces made
here for :mod:`devcluster.nodeinit`, which runs containerd, the kubelet and
kube-proxy inside them. Stopping ends process 1, and with it every process of
the node (containers and their shims included); the mount namespace goes with
them, and :func:`devcluster.cgroups.remove_root` removes the node's cgroups.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devcluster import cgroups, configs
from devcluster.errors import DevClusterError
from devcluster.layout import INTERNET_ADDRESS, ClusterLayout, NodeLayout
from devcluster.network import NETNS_DIR
from devtools.kube import render_kubeconfig
from devtools.kubepki import ensure_certificate
from devtools.process import PidFile, alive

# The paths a node has of its own, bound from its directory ("tmpfs": a fresh one).
NODE_PATHS = (
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/run/containerd",
    "/var/lib/cni",
    "/var/log",
    "/etc/cni/net.d",
)
_MARK = b"devcluster.nodeinit"


@dataclass(frozen=True, slots=True)
class NodeBinaries:
    kubelet: Path
    kube_proxy: Path


def cgroup_root(layout: ClusterLayout, node: NodeLayout) -> str:
    return f"/callmap/{layout.name}/{node.name}"


def init_config(layout: ClusterLayout, node: NodeLayout, binaries: NodeBinaries) -> dict[str, Any]:
    """What the node's process 1 mounts and runs (:mod:`devcluster.nodeinit`)."""
    d = node.directory
    mounts: dict[str, str] = {path: str(d / "root" / path.lstrip("/")) for path in NODE_PATHS}
    mounts["/run/netns"] = "tmpfs"  # pods' network namespaces stay inside the node
    kubelet = [
        str(binaries.kubelet),
        f"--config={d / 'kubelet.yaml'}",
        f"--kubeconfig={d / 'kubelet.kubeconfig'}",
        f"--hostname-override={node.name}",
        f"--node-ip={node.address}",
        "--v=1",
    ]
    proxy = [str(binaries.kube_proxy), f"--config={d / 'kube-proxy.yaml'}", "--v=1"]
    containerd = ["containerd", f"--config={d / 'containerd.toml'}"]
    return {
        "hostname": node.name,
        "netns": str(NETNS_DIR / node.netns),
        "mounts": mounts,
        "services": [
            {"name": "containerd", "argv": containerd},
            {"name": "kubelet", "argv": kubelet, "wait_for": configs.CONTAINERD_SOCKET},
            {"name": "kube-proxy", "argv": proxy},
        ],
    }


def write_node_files(
    layout: ClusterLayout, node: NodeLayout, pki: Path, sandbox_image: str, binaries: NodeBinaries
) -> None:
    """Every configuration file and credential the node's services read."""
    d = node.directory
    (d / "root" / "etc" / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
    (d / "root/etc/cni/net.d/10-callmap.conflist").write_text(configs.cni_config(node))
    (d / "containerd.toml").write_text(configs.containerd_config(sandbox_image))
    (d / "resolv.conf").write_text(configs.resolv_conf(INTERNET_ADDRESS))
    ca = (pki / "ca.crt").read_bytes()
    identities = {
        "kubelet": {"O": "system:nodes", "CN": f"system:node:{node.name}"},
        "kube-proxy": {"CN": "system:kube-proxy"},
    }
    for role, subject in identities.items():
        cert, key = ensure_certificate(pki, f"{role}-{node.name}", subject)
        kubeconfig = render_kubeconfig(layout.apiserver, ca, cert.read_bytes(), key.read_bytes())
        (d / f"{role}.kubeconfig").write_text(kubeconfig)
    kubelet = configs.kubelet_config(
        node, cgroup_root(layout, node), str(pki / "ca.crt"), str(d / "resolv.conf")
    )
    (d / "kubelet.yaml").write_text(kubelet)
    proxy = configs.kube_proxy_config(node, str(d / "kube-proxy.kubeconfig"))
    (d / "kube-proxy.yaml").write_text(proxy)
    (d / "init.json").write_text(json.dumps(init_config(layout, node, binaries), indent=2))


@dataclass(frozen=True, slots=True)
class Node:
    layout: ClusterLayout
    node: NodeLayout

    @property
    def containerd_socket(self) -> Path:
        """containerd's socket, as this machine sees it (the node binds it at the usual path)."""
        return self.node.directory / "root" / configs.CONTAINERD_SOCKET.lstrip("/")

    @property
    def _pid_file(self) -> PidFile:
        """The ``unshare`` holding the namespaces; its one child is the node's process 1."""
        directory = str(self.node.directory).encode()
        return PidFile(self.node.directory / "init.pid", (_MARK, directory))

    def init_pid(self) -> int | None:
        """Process 1 of the node, as this machine numbers it; None if the node is down."""
        holder = self._pid_file.recorded()
        if holder is None:
            return None
        try:
            children = Path(f"/proc/{holder}/task/{holder}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def start(self) -> None:
        if self.init_pid() is not None:
            return
        cgroups.ensure_root(cgroup_root(self.layout, self.node))
        # unshare itself, not behind nsenter: a second exec would leave a moment when the
        # recorded pid's command line is empty, and the record would be taken for stale.
        command = [
            "unshare",
            "--mount",
            "--uts",
            "--pid",
            "--fork",
            "--propagation",
            "private",
            "--mount-proc",
            sys.executable,
            "-m",
            "devcluster.nodeinit",
            str(self.node.directory),
        ]
        self._pid_file.spawn(command, self.node.directory / "init.log")
        deadline = time.monotonic() + 10
        while self.init_pid() is None:
            if time.monotonic() > deadline or self._pid_file.recorded() is None:
                raise DevClusterError(
                    f"node {self.node.name} did not start; see {self.node.directory / 'init.log'}"
                )
            time.sleep(0.05)

    def services(self) -> dict[str, Any]:
        """What the node's process 1 last said of its services (pids are the node's own)."""
        try:
            report: dict[str, Any] = json.loads((self.node.directory / "status.json").read_text())
        except (OSError, ValueError):
            return {}
        return dict(report.get("services", {}))

    def stop(self, timeout: float = 30.0) -> bool:
        """End the node (SIGTERM to process 1, SIGKILL after ``timeout``); False if it was down."""
        init = self.init_pid()
        holder = self._pid_file.recorded()
        if init is None and holder is None:
            cgroups.remove_root(cgroup_root(self.layout, self.node))
            return False
        if init is not None:
            os.kill(init, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while alive(init) and time.monotonic() < deadline:
                time.sleep(0.2)
            if alive(init):
                os.kill(init, signal.SIGKILL)
        self._pid_file.stop(timeout=5)
        # The PID namespace's processes die with process 1; their cgroups empty a moment later.
        root, deadline = cgroup_root(self.layout, self.node), time.monotonic() + 10
        cgroups.remove_root(root)
        while cgroups.exists(root) and time.monotonic() < deadline:
            time.sleep(0.2)
            cgroups.remove_root(root)
        return True
