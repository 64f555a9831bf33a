"""The configuration files of a development cluster's node services and controllers. Pure.

Each function renders one file from the cluster's layout, as a node of a
kubeadm cluster would have it, with what differs here said at the spot:

- containerd 1.6 (Debian's) with the CRI plugin, runc and the cgroupfs
  driver, its sandbox image built on this machine, OOM score adjustments kept
  at or above its own (no process here may lower one);
- the CNI chain: a ``bridge`` with ``host-local`` addresses from the node's pod
  range, and ``portmap``;
- the kubelet (cgroup v1 allowed, cgroupfs, its cgroups under a root of its
  own so that two kubelets share the machine, image garbage collection off
  because images cannot be pulled again);
- kube-proxy in nftables mode, leaving the machine-wide conntrack sysctls alone.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from devcluster.layout import CLUSTER_DOMAIN, DNS_SERVICE_IP, POD_CIDR, NodeLayout

CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
CNI_BIN_DIR = "/usr/lib/cni"  # where Debian's containernetworking-plugins installs them
RUNC = "/usr/sbin/runc"


def containerd_config(sandbox_image: str) -> str:
    """containerd's ``config.toml`` (version 2); paths are the standard ones, which a node mounts
    from its own directory."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{CONTAINERD_SOCKET}"

[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/containerd/opt"

[{cri}]
  sandbox_image = "{sandbox_image}"
  # Nothing here may lower an OOM score adjustment below its own (this machine's
  # processes lack CAP_SYS_RESOURCE); runc would fail to start every sandbox (-998).
  restrict_oom_score_adj = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "/etc/cni/net.d"
"""


def cni_config(node: NodeLayout) -> str:
    """The node's CNI network: its pods on bridge ``cni0``, addresses from its pod range."""
    ipam = {
        "type": "host-local",
        "ranges": [[{"subnet": str(node.pod_range), "gateway": node.gateway}]],
        "routes": [{"dst": "0.0.0.0/0"}],
    }
    bridge = {
        "type": "bridge",
        "bridge": "cni0",
        "isGateway": True,
        "ipMasq": False,  # the node masquerades only what leaves the pod network
        "hairpinMode": True,  # a pod reaches itself through its own Service
        "ipam": ipam,
    }
    portmap = {"type": "portmap", "capabilities": {"portMappings": True}}
    network = {"cniVersion": "1.0.0", "name": "callmap", "plugins": [bridge, portmap]}
    return json.dumps(network, indent=2) + "\n"


def resolv_conf(nameserver: str) -> str:
    """What the node (and pods with ``dnsPolicy: Default``, CoreDNS among them) resolve with."""
    return f"nameserver {nameserver}\noptions edns0\n"


def kubelet_config(node: NodeLayout, cgroup_root: str, ca_file: str, resolv: str) -> str:
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This machine mounts cgroup v1 controllers; 1.35 and later refuse that by default.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        "address": node.address,
        "healthzBindAddress": "127.0.0.1",
        "readOnlyPort": 0,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": ca_file},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [DNS_SERVICE_IP],
        "resolvConf": resolv,
        "failSwapOn": False,
        # Images are built here and imported: collected, they could not be pulled back.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # A shared development machine: evict only when really out of room.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "rotateCertificates": False,
        "serializeImagePulls": False,
        "shutdownGracePeriod": "0s",
        "maxPods": 110,
    }
    return str(yaml.safe_dump(config, sort_keys=False))


def kube_proxy_config(node: NodeLayout, kubeconfig: str) -> str:
    config: dict[str, Any] = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": kubeconfig},
        "hostnameOverride": node.name,
        "clusterCIDR": str(POD_CIDR),
        "detectLocalMode": "ClusterCIDR",
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # 0: leave the kernel's conntrack settings as they are; several are machine-wide,
        # and a node here is a namespace of a shared machine.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }
    return str(yaml.safe_dump(config, sort_keys=False))
