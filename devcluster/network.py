"""The development cluster's network: namespaces, links, routes and the nodes' NAT.

Builds what :mod:`devcluster.layout` describes with ``ip`` and ``nft``. Every
interface and rule lives in a namespace this module creates, except the host's
one link to the fabric; :func:`remove_network` deletes the namespaces, and
with them every link, route and rule (the host's link goes with its peer).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Sequence
from pathlib import Path

from devcluster.errors import DevClusterError
from devcluster.layout import FABRIC, HOST_ADDRESS, INTERNET_ADDRESS, POD_CIDR, ClusterLayout

NETNS_DIR = Path("/run/netns")
_PREFIX = FABRIC.prefixlen


def run(command: Sequence[str], *, check: bool = True, stdin: str | None = None) -> str:
    """Run a system command; a failure raises :class:`DevClusterError` with its message."""
    try:
        result = subprocess.run(
            list(command), input=stdin, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise DevClusterError(f"{command[0]} is needed and not installed") from None
    if check and result.returncode != 0:
        raise DevClusterError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result.stdout


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def node_masquerade_rules() -> str:
    """nft rules for a node: what its pods send outside the pod network leaves as the node."""
    return f"""table ip callmap-node {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {POD_CIDR} ip daddr != {POD_CIDR} oifname "eth0" masquerade
  }}
}}
"""


def create_network(layout: ClusterLayout) -> None:
    """Build the fabric, the host's link, the internet and each node's namespace."""
    others = (
        sorted(p.name for p in NETNS_DIR.glob("callmap-*-fabric")) if NETNS_DIR.exists() else []
    )
    if others:
        raise DevClusterError(
            f"network namespace {others[0]} exists: a development cluster runs, or one was "
            "not stopped (`callmap dev cluster stop --name NAME` removes it); the clusters "
            "share their addresses, so one runs at a time"
        )
    fabric = layout.fabric_netns
    _add_netns(fabric)
    run(["ip", "-n", fabric, "link", "add", "br0", "type", "bridge"])
    run(["ip", "-n", fabric, "link", "set", "br0", "up"])
    # The host's link: this machine's side keeps the address the control plane listens on.
    host = layout.host_interface
    with contextlib.suppress(DevClusterError):
        run(["ip", "link", "del", host])  # a leftover of a crashed run
    run(["ip", "link", "add", host, "type", "veth", "peer", "name", "host", "netns", fabric])
    run(["ip", "addr", "add", f"{HOST_ADDRESS}/{_PREFIX}", "dev", host])
    run(["ip", "link", "set", host, "up"])
    _attach(fabric, "host")
    _add_member(layout, layout.internet_netns, "inet", INTERNET_ADDRESS)
    for node in layout.nodes:
        _add_member(layout, node.netns, f"n{node.index}", node.address)
        ns = node.netns
        run(["ip", "-n", ns, "route", "add", "default", "via", INTERNET_ADDRESS])
        for other in layout.nodes:
            if other is not node:
                route = ["route", "add", str(other.pod_range), "via", other.address]
                run(["ip", "-n", ns, *route])
        for setting in ("net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"):
            run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", setting])
        run(["ip", "netns", "exec", ns, "nft", "-f", "-"], stdin=node_masquerade_rules())


def remove_network(layout: ClusterLayout) -> list[str]:
    """Delete every namespace of the cluster (and so their links); what was removed."""
    removed = []
    for name in (*(node.netns for node in layout.nodes), layout.internet_netns):
        if netns_exists(name):
            run(["ip", "netns", "del", name], check=False)
            removed.append(name)
    if netns_exists(layout.fabric_netns):
        run(["ip", "netns", "del", layout.fabric_netns], check=False)
        removed.append(layout.fabric_netns)
    if Path(f"/sys/class/net/{layout.host_interface}").exists():
        run(["ip", "link", "del", layout.host_interface], check=False)
        removed.append(layout.host_interface)
    return removed


def _add_netns(name: str) -> None:
    run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def _add_member(layout: ClusterLayout, netns: str, port: str, address: str) -> None:
    """A namespace on the fabric: its ``eth0`` at ``address``, the fabric's end named ``port``."""
    _add_netns(netns)
    fabric = layout.fabric_netns
    run(["ip", "-n", fabric, "link", "add", port, "type", "veth", "peer", "name", "eth0"])
    run(["ip", "-n", fabric, "link", "set", "eth0", "netns", netns])
    _attach(fabric, port)
    run(["ip", "-n", netns, "addr", "add", f"{address}/{_PREFIX}", "dev", "eth0"])
    run(["ip", "-n", netns, "link", "set", "eth0", "up"])


def _attach(fabric: str, port: str) -> None:
    run(["ip", "-n", fabric, "link", "set", port, "master", "br0"])
    run(["ip", "-n", fabric, "link", "set", port, "up"])
