"""Where everything of a development cluster lives: addresses, names and directories. Pure.

The cluster's network is built of namespaces this project creates:

- a *fabric* namespace holding one bridge, the cluster's "physical" network
  ``10.77.0.0/24``;
- the host (this machine's own namespace) on the fabric at ``10.77.0.1``,
  where the API server and the cluster's Kafka broker listen;
- one namespace per node at ``10.77.0.<10+i>``, with its pods on a bridge of
  their own, ``10.200.<i>.0/<prefix>``; a node routes the other nodes' pod
  ranges to them (pods talk to each other with their own addresses) and
  masquerades what its pods send anywhere else, as ip-masq-agent does;
- an *internet* namespace at ``10.77.0.254``, the nodes' default route: the
  upstream DNS server CoreDNS forwards to, and the external addresses a
  topology's calls reach.

The pod range per node is small on purpose (a /27 gives 29 pod addresses), so
that an address freed by a deleted pod is soon handed out again, as on a busy
node. Only one development cluster runs on a machine at a time: the
addresses are fixed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

FABRIC = ipaddress.ip_network("10.77.0.0/24")
HOST_ADDRESS = "10.77.0.1"
INTERNET_ADDRESS = "10.77.0.254"
POD_CIDR = ipaddress.ip_network("10.200.0.0/16")
SERVICE_CIDR = "10.96.0.0/16"
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
APISERVER_PORT = 6443
KAFKA_PORT = 9092
DEFAULT_POD_PREFIX = 27
MAX_NODES = 8


@dataclass(frozen=True, slots=True)
class NodeLayout:
    name: str
    """The node's name, also its hostname."""
    index: int
    """1, 2, ...: the node's place in the cluster."""
    address: str
    """Its address on the fabric: the node's InternalIP."""
    pod_range: ipaddress.IPv4Network
    """Where its pods get their addresses (the first is the pod bridge's own)."""
    netns: str
    """The name of its network namespace (``ip netns``)."""
    directory: Path
    """Its files: configuration, logs, and what it mounts as its own ``/var/lib/...``."""

    @property
    def gateway(self) -> str:
        """The pod bridge's address: its pods' default gateway."""
        return str(self.pod_range[1])


@dataclass(frozen=True, slots=True)
class ClusterLayout:
    name: str
    directory: Path
    nodes: tuple[NodeLayout, ...]

    @property
    def fabric_netns(self) -> str:
        return f"callmap-{self.name}-fabric"

    @property
    def internet_netns(self) -> str:
        return f"callmap-{self.name}-internet"

    @property
    def host_interface(self) -> str:
        """The host's end of its link to the fabric (at most 15 characters)."""
        return f"cm-{self.name}"[:15]

    @property
    def apiserver(self) -> str:
        return f"https://{HOST_ADDRESS}:{APISERVER_PORT}"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{HOST_ADDRESS}:{KAFKA_PORT}"

    def node(self, name: str) -> NodeLayout:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


def plan_cluster(
    name: str, directory: Path, node_count: int = 2, pod_prefix: int = DEFAULT_POD_PREFIX
) -> ClusterLayout:
    """The layout of cluster ``name`` with ``node_count`` nodes, its files in ``directory``."""
    if not 1 <= node_count <= MAX_NODES:
        raise ValueError(f"a development cluster has 1 to {MAX_NODES} nodes, not {node_count}")
    if not 24 <= pod_prefix <= 29:
        raise ValueError(f"a node's pod range is a /24 to a /29, not a /{pod_prefix}")
    if not name.replace("-", "").isalnum() or len(name) > 12:
        raise ValueError(f"a cluster name is at most 12 letters, digits and dashes: {name!r}")
    nodes = tuple(
        NodeLayout(
            name=f"node-{i}",
            index=i,
            address=str(FABRIC[10 + i]),
            pod_range=ipaddress.IPv4Network(f"10.200.{i}.0/{pod_prefix}"),
            netns=f"callmap-{name}-node-{i}",
            directory=directory / "nodes" / f"node-{i}",
        )
        for i in range(1, node_count + 1)
    )
    return ClusterLayout(name, directory, nodes)
