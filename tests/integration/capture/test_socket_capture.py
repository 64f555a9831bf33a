"""Socket scans on real connections between network namespaces."""

from __future__ import annotations

import subprocess
import sys

import msgspec
import pytest
from helpers.dnsnet import CLIENT_V4, SERVER_V4, DnsNet

from callmap.wire import SocketObservation

pytestmark = pytest.mark.netns

SERVER = f"""
import socket, sys
listener = socket.create_server(("{SERVER_V4}", 7070))
print("listening", flush=True)
conn, _ = listener.accept()
sys.stdin.read()
"""
CLIENT = f"""
import socket, sys
conn = socket.create_connection(("{SERVER_V4}", 7070), timeout=5)
print("connected", conn.getsockname()[1], flush=True)
sys.stdin.read()
"""


def _start(net: DnsNet, ns: str, code: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def _scan_while_connected(
    net: DnsNet, *args: str
) -> tuple[int, subprocess.CompletedProcess[bytes]]:
    """A server and a connected client in their namespaces, one scan, then both closed."""
    server, _ = _start(net, net.server, SERVER)
    client, line = _start(net, net.client, CLIENT)
    try:
        scan = subprocess.run(
            [
                sys.executable,
                "-m",
                "callmap",
                "capture",
                "sockets",
                "--once",
                "--output",
                "jsonl",
                *args,
            ],
            capture_output=True,
            check=True,
        )
    finally:
        for process in (client, server):
            process.stdin.close()  # type: ignore[union-attr]
            process.wait(timeout=10)
    return int(line.split()[1]), scan


def test_both_ends_of_a_connection_are_found_with_their_roles_and_namespaces(
    dns_net: DnsNet,
) -> None:
    client_port, scan = _scan_while_connected(dns_net, "--node", "lab-node")
    records = [
        msgspec.json.decode(line, type=SocketObservation) for line in scan.stdout.splitlines()
    ]
    # The scan covers every namespace of the machine, a lab's pods (port 7070 too) included.
    mine = {dns_net.netns_id(dns_net.server), dns_net.netns_id(dns_net.client)}
    ours = [r for r in records if r.netns in mine and 7070 in (r.local_port, r.remote_port)]
    by_role = {r.role: r for r in ours}
    assert len(ours) == 2, ours
    server_side, client_side = by_role["server"], by_role["client"]
    assert server_side.netns == dns_net.netns_id(dns_net.server)
    assert (server_side.local_ip, server_side.local_port) == (SERVER_V4, 7070)
    assert (server_side.remote_ip, server_side.remote_port) == (CLIENT_V4, client_port)
    assert client_side.netns == dns_net.netns_id(dns_net.client)
    assert (client_side.local_ip, client_side.local_port) == (CLIENT_V4, client_port)
    assert (client_side.remote_ip, client_side.remote_port) == (SERVER_V4, 7070)
    assert all(r.node == "lab-node" and r.pod_uid is None and r.first_seen == r.ts for r in ours)
    assert b"sockets: seen=" in scan.stderr


def test_a_scan_can_be_limited_to_some_network_namespaces(dns_net: DnsNet) -> None:
    _, scan = _scan_while_connected(dns_net, "--scan-netns", dns_net.server)
    records = [
        msgspec.json.decode(line, type=SocketObservation) for line in scan.stdout.splitlines()
    ]
    assert [r.role for r in records] == ["server"]
    assert {r.netns for r in records} == {dns_net.netns_id(dns_net.server)}
