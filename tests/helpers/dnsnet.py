"""A real little network for the capture tests: client, node, DNS server.

Three network namespaces joined by veth pairs, routed through the "node"
namespace the way a Kubernetes node routes between its pods::

    client ns (cli0: 10.77.1.10, fd77:1::10) <-> node ns <-> server ns (srv0: 10.77.0.53, fd77::53)

The server namespace runs dnsmasq, a real DNS server, authoritative for
``cluster.local`` (unknown names there get NXDOMAIN, like search-path noise).
Everything is created with a random prefix and deleted afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from helpers.netns import network_namespaces, wait_for_local_routes

SERVER_V4, SERVER_V6 = "10.77.0.53", "fd77::53"
CLIENT_V4, CLIENT_V6 = "10.77.1.10", "fd77:1::10"

DNS_RECORDS = [
    "--host-record=cartservice.shop.svc.cluster.local,10.96.4.2",
    "--host-record=mongodb.data.svc.cluster.local,10.96.5.5,fd00::5",
    "--host-record=edge.stripe.net,203.0.113.10",
    "--cname=api.stripe.com,edge.stripe.net",
]


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


def _ns(ns: str, *args: str) -> None:
    _run("ip", "netns", "exec", ns, *args)


@dataclass(frozen=True)
class DnsNet:
    prefix: str
    client: str
    node: str
    server: str

    def netns_id(self, name: str) -> int:
        """The id a socket scan gives namespace ``name``: the inode of its ``net/tcp``,
        as a process inside it sees its own (``stat``, not callmap's code)."""
        found = self.in_ns(name, "stat", "-L", "-c", "%i", "/proc/self/net/tcp")
        assert found.returncode == 0, found.stderr
        return int(found.stdout)

    def in_ns(self, ns: str, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *args],
            capture_output=True,
            text=True,
            check=False,
            **kwargs,
        )  # type: ignore[call-overload]


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespace tests need root"
    for tool in ("ip", "dnsmasq"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make test installs it)"
    return None


@pytest.fixture(scope="session")
def dns_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsNet]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    prefix = f"cm{uuid.uuid4().hex[:6]}"
    net = DnsNet(prefix, f"{prefix}-cli", f"{prefix}-node", f"{prefix}-srv")
    dnsmasq: subprocess.Popen[bytes] | None = None
    with network_namespaces(net.client, net.node, net.server):
        try:
            for side, ns, v4, v6, net4, net6 in (
                ("srv", net.server, SERVER_V4, SERVER_V6, "10.77.0", "fd77:0:"),
                ("cli", net.client, CLIENT_V4, CLIENT_V6, "10.77.1", "fd77:1:"),
            ):
                inner, outer = f"{prefix}{side}0", f"{prefix}{side}1"
                _run(
                    "ip",
                    "link",
                    "add",
                    inner,
                    "netns",
                    ns,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    outer,
                    "netns",
                    net.node,
                )
                _ns(ns, "ip", "addr", "add", f"{v4}/24", "dev", inner)
                _ns(ns, "ip", "-6", "addr", "add", f"{v6}/64", "dev", inner, "nodad")
                _ns(ns, "ip", "link", "set", inner, "up")
                _ns(ns, "ip", "route", "add", "default", "via", f"{net4}.1")
                _ns(ns, "ip", "-6", "route", "add", "default", "via", f"{net6}:1")
                _ns(net.node, "ip", "addr", "add", f"{net4}.1/24", "dev", outer)
                _ns(net.node, "ip", "-6", "addr", "add", f"{net6}:1/64", "dev", outer, "nodad")
                _ns(net.node, "ip", "link", "set", outer, "up")
                wait_for_local_routes(ns, v4, v6)
                wait_for_local_routes(net.node, f"{net4}.1", f"{net6}:1")
            _ns(net.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            _ns(net.node, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
            log = tmp_path_factory.mktemp("dnsmasq") / "dnsmasq.log"
            dnsmasq = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    net.server,
                    "dnsmasq",
                    "--keep-in-foreground",
                    "--no-resolv",
                    "--no-hosts",
                    "--bind-interfaces",
                    "--user=root",
                    f"--listen-address={SERVER_V4},{SERVER_V6}",
                    "--local=/cluster.local/",
                    "--pid-file=",
                    f"--log-facility={log}",
                    *DNS_RECORDS,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            _wait_for_dns(net)
            yield net
        finally:
            if dnsmasq is not None:
                dnsmasq.terminate()
                dnsmasq.wait(timeout=10)


PROBE = f"""
import dns.resolver
resolver = dns.resolver.Resolver(configure=False)
resolver.nameservers = ["{SERVER_V4}"]
resolver.resolve("cartservice.shop.svc.cluster.local", lifetime=1)
"""


def _wait_for_dns(net: DnsNet) -> None:
    probe = PROBE
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        result = net.in_ns(net.client, _python(), "-c", probe)
        if result.returncode == 0:
            return
        time.sleep(0.3)
    raise RuntimeError(f"dnsmasq did not answer: {result.stderr[-2000:]}")


def _python() -> str:
    import sys

    return sys.executable
