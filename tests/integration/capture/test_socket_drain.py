"""A server closing its listener while its connections drain stays the server side.

Real sockets in the capture tests' namespaces, a real agent scanning them into
a real broker: the server accepts a connection, then closes its listening
socket (as a rolling restart or a graceful shutdown does) and keeps the
connection open. Every report of that connection from the server's namespace
must say ``server``; before, the scans after the close called it a new
``client`` connection, and the edge was reversed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest
from helpers.dnsnet import SERVER_V4, DnsNet
from helpers.nodetopics import collect, end_offsets

from callmap.broker import ensure_topics
from callmap.config import Settings
from callmap.wire import SOCKETS, SocketBatch, SocketObservation

pytestmark = [pytest.mark.kafka, pytest.mark.netns]

PORT = 7171
SERVER = f"""
import socket, sys
listener = socket.create_server(("{SERVER_V4}", {PORT}))
print("listening", flush=True)
conn, _ = listener.accept()
print("accepted", flush=True)
sys.stdin.readline()
listener.close()
print("closed", flush=True)
sys.stdin.read()
"""
CLIENT = f"""
import socket, sys
conn = socket.create_connection(("{SERVER_V4}", {PORT}), timeout=5)
print("connected", flush=True)
sys.stdin.read()
"""


def _in_ns(ns: str, code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _server_side(batches: list[SocketBatch]) -> list[SocketObservation]:
    return [r for b in batches for r in b.records if r.local_port == PORT]


async def test_a_draining_connection_stays_the_server_side(
    dns_net: DnsNet, settings: Settings
) -> None:
    await ensure_topics(settings.kafka, settings.topics)
    node = f"node-{uuid.uuid4().hex[:6]}"
    start = await end_offsets(settings, SOCKETS.name)
    env = {
        **os.environ,
        "CALLMAP_KAFKA_BOOTSTRAP": settings.kafka.bootstrap_servers,
        "CALLMAP_CLUSTER": "test",
    }
    server = _in_ns(dns_net.server, SERVER)
    client = None
    agent = None
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "listening"
        client = _in_ns(dns_net.client, CLIENT)
        assert client.stdout is not None and client.stdout.readline().strip() == "connected"
        assert server.stdout.readline().strip() == "accepted"
        command = ["capture", "sockets", "--node", node, "--scan-netns", dns_net.server]
        command += ["--scan-interval", "0.5", "--refresh-interval", "1", "--metrics-port", "0"]
        agent = subprocess.Popen([sys.executable, "-m", "callmap", *command], env=env)
        seen = await collect(settings, SOCKETS.name, start, node, until=_server_side)
        assert [r.role for r in _server_side(seen)][:1] == ["server"]

        assert server.stdin is not None
        server.stdin.write("close\n")
        server.stdin.flush()
        assert server.stdout.readline().strip() == "closed"
        await asyncio.sleep(3.0)  # scans every 0.5 s, the connection reported every second
        after = await collect(
            settings, SOCKETS.name, start, node, until=lambda found: len(_server_side(found)) >= 4
        )
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(timeout=20)
        for process in (client, server):
            if process is not None and process.stdin is not None:
                process.stdin.close()
                process.wait(timeout=10)

    reports = _server_side(after)
    assert len(reports) >= 4, reports
    assert {r.role for r in reports} == {"server"}, [(r.role, r.first_seen) for r in reports]
    assert len({r.first_seen for r in reports}) == 1  # one connection all along
