"""The DNS agent on a real network: dnsmasq answers, the agent captures in the
node namespace between client and server, and records arrive on real Kafka."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import pytest
from helpers.dnsnet import CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6, DnsNet
from helpers.nodetopics import collect, end_offsets

from callmap.broker import ensure_topics
from callmap.config import Settings
from callmap.readiness import CAPTURE_RUNNING
from callmap.wire import DNS, STATS, CaptureStats, DnsAnswer, StageStats
from devtools.process import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.netns]

QUERIES = f"""
import dns.message, dns.query, dns.rcode
def ask(name, qtype, server, tcp=False):
    query = dns.message.make_query(name, qtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return dns.rcode.to_text(send(query, server, timeout=3).rcode())
print(ask("cartservice.shop.svc.cluster.local", "A", "{SERVER_V4}"))
print(ask("mongodb.data.svc.cluster.local", "A", "{SERVER_V4}", tcp=True))
print(ask("mongodb.data.svc.cluster.local", "AAAA", "{SERVER_V6}"))
print(ask("api.stripe.com", "A", "{SERVER_V6}", tcp=True))
print(ask("cartservice.shop.svc.cluster.local.shop.svc.cluster.local", "A", "{SERVER_V4}"))
"""


def _saw_nxdomain(stats: list[CaptureStats]) -> bool:
    return any("nxdomain" in s.stages.get("dns.parse", StageStats()).dropped for s in stats)


def _answers(batches: list) -> list[DnsAnswer]:  # type: ignore[type-arg]
    return [record for batch in batches for record in batch.records]


def _start_agent(settings: Settings, command: list[str]) -> subprocess.Popen[bytes]:
    """``callmap <command>`` against the test broker, as cluster ``test``, logging the
    line :func:`_capturing` waits for; its output piped."""
    env = {
        **os.environ,
        "CALLMAP_KAFKA_BOOTSTRAP": settings.kafka.bootstrap_servers,
        "CALLMAP_CLUSTER": "test",
        "CALLMAP_LOG_LEVEL": "INFO",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "callmap", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def _capturing(agent: subprocess.Popen[bytes], timeout: float = 60.0) -> list[bytes]:
    """Until the agent logs that it runs, its packet sockets open (a loaded machine
    can take seconds to start it): answers sent earlier would not be seen. Its
    output is read on to its end, into the list returned."""
    lines: list[bytes] = []
    running = threading.Event()

    def read() -> None:
        assert agent.stdout is not None
        for line in agent.stdout:  # ends when the agent does
            lines.append(line)
            if CAPTURE_RUNNING.encode() in line:
                running.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not running.is_set():
        if agent.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(b"".join(lines).decode(errors="replace"))
        await asyncio.sleep(0.1)
    return lines


def _metrics(port: int, path: str = "/metrics") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
        return answer.read().decode()


@pytest.mark.parametrize(
    ("interface", "reading"),
    [(None, "--ring"), ("client-side veth", "--ring"), (None, "--no-ring")],
    ids=["all", "one-interface", "all-frame-by-frame"],
)
async def test_answers_from_a_real_dns_server_arrive_once_each(
    dns_net: DnsNet, settings: Settings, interface: str | None, reading: str
) -> None:
    await ensure_topics(settings.kafka, settings.topics)
    node = f"node-{uuid.uuid4().hex[:6]}"
    dns_start = await end_offsets(settings, DNS.name)
    stats_start = await end_offsets(settings, STATS.name)
    metrics_port = free_port()
    # On the client-side veth (scapy's per-interface socket) each response passes once.
    only = ["--interface", f"{dns_net.prefix}cli1"] if interface else []
    command = ["capture", "dns", "--netns", dns_net.node, "--node", node]
    command += ["--flush-interval", "0.5", "--stats-interval", "1"]
    command += ["--metrics-port", str(metrics_port), reading, *only]
    agent = _start_agent(settings, command)
    try:
        output = await _capturing(agent)
        assert agent.poll() is None, b"".join(output).decode(errors="replace")
        asked = dns_net.in_ns(dns_net.client, sys.executable, "-c", QUERIES)
        assert asked.stdout.split() == ["NOERROR"] * 4 + ["NXDOMAIN"], asked.stderr

        batches = await collect(
            settings, DNS.name, dns_start, node, until=lambda found: len(_answers(found)) >= 4
        )
        stats = await collect(settings, STATS.name, stats_start, node, until=_saw_nxdomain)
        metrics = await asyncio.to_thread(_metrics, metrics_port)
        health = await asyncio.to_thread(_metrics, metrics_port, "/healthz")
    finally:
        agent.send_signal(signal.SIGINT)
        agent.wait(timeout=20)

    answers = sorted(_answers(batches), key=lambda r: (r.qname, r.qtype))
    assert all(isinstance(a, DnsAnswer) and a.node == node and a.cluster == "test" for a in answers)
    seen = [
        (a.qname, a.qtype, a.transport, a.client_ip, a.answers, a.cnames, a.count) for a in answers
    ]
    assert seen == [
        ("api.stripe.com", "A", "tcp", CLIENT_V6, ("203.0.113.10",), ("edge.stripe.net",), 1),
        ("cartservice.shop.svc.cluster.local", "A", "udp", CLIENT_V4, ("10.96.4.2",), (), 1),
        ("mongodb.data.svc.cluster.local", "A", "tcp", CLIENT_V4, ("10.96.5.5",), (), 1),
        ("mongodb.data.svc.cluster.local", "AAAA", "udp", CLIENT_V6, ("fd00::5",), (), 1),
    ]
    assert {a.server_ip for a in answers} == {SERVER_V4, SERVER_V6}

    totals = {}
    for record in stats:
        assert isinstance(record, CaptureStats)
        for stage, counts in record.stages.items():
            for reason, n in counts.dropped.items():
                totals[(stage, reason)] = totals.get((stage, reason), 0) + n
    assert totals.get(("dns.parse", "nxdomain"), 0) >= 1
    # Each response crossed two interfaces of the node: the second UDP sighting is folded
    # away, the second TCP segment is already a duplicate to the stream reassembly.
    udp_again = totals.get(("dns.fold", "duplicate_sighting"), 0)
    tcp_again = totals.get(("dns.tcp", "duplicate"), 0)
    if interface is None:
        assert udp_again >= 2 and tcp_again >= 2
    else:
        assert (udp_again, tcp_again) == (0, 0)
    assert 'callmap_capture_emitted_total{stage="dns.fold"}' in metrics
    assert 'callmap_capture_dropped_total{reason="nxdomain",stage="dns.parse"}' in metrics
    assert "callmap_capture_outbox_bytes" in metrics
    ringed = 1 if reading == "--ring" else 0  # one socket: all interfaces, or the one named
    assert f"callmap_capture_ring_sockets {ringed}.0" in metrics
    assert health == "ok\n"  # what the liveness probe asks


async def test_a_full_window_is_published_before_its_time(
    dns_net: DnsNet, settings: Settings
) -> None:
    """Answers that never fold (a flood of new names) do not wait for the window's end,
    holding memory: the window is published once it holds --max-window-answers."""
    await ensure_topics(settings.kafka, settings.topics)
    node = f"node-{uuid.uuid4().hex[:6]}"
    dns_start = await end_offsets(settings, DNS.name)
    metrics_port = free_port()
    command = ["capture", "dns", "--netns", dns_net.node, "--node", node]
    command += ["--flush-interval", "600", "--max-window-answers", "2"]
    command += ["--metrics-port", str(metrics_port)]
    agent = _start_agent(settings, command)
    try:
        output = await _capturing(agent)
        asked = dns_net.in_ns(dns_net.client, sys.executable, "-c", QUERIES)
        assert asked.stdout.split() == ["NOERROR"] * 4 + ["NXDOMAIN"], asked.stderr
        early = await collect(
            settings, DNS.name, dns_start, node, until=lambda found: len(_answers(found)) >= 2
        )
        metrics = await asyncio.to_thread(_metrics, metrics_port)
    finally:
        agent.send_signal(signal.SIGINT)  # the last window is flushed on the way out
        agent.wait(timeout=20)
    assert len(_answers(early)) >= 2, b"".join(output).decode(errors="replace")
    assert 'callmap_capture_events_total{event="dns_window_full"}' in metrics
    every = await collect(
        settings, DNS.name, dns_start, node, until=lambda found: len(_answers(found)) >= 4
    )
    assert sorted((a.qname, a.qtype, a.count) for a in _answers(every)) == [
        ("api.stripe.com", "A", 1),
        ("cartservice.shop.svc.cluster.local", "A", 1),
        ("mongodb.data.svc.cluster.local", "A", 1),
        ("mongodb.data.svc.cluster.local", "AAAA", 1),
    ]


NODE_LOCAL_CACHE = "169.254.20.10"
NODE_TOWARDS_SERVER = "10.77.0.1"  # the node's address on the server's link: its lookups' source

CACHE_QUERIES = f"""
import dns.message, dns.query, dns.rcode
for name in ("cartservice.shop.svc.cluster.local", "api.stripe.com"):
    query = dns.message.make_query(name, "A")
    print(dns.rcode.to_text(dns.query.udp(query, "{NODE_LOCAL_CACHE}", timeout=3).rcode()))
"""


async def test_a_node_local_caches_upstream_lookups_are_not_the_nodes_calls(
    dns_net: DnsNet, settings: Settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """A real DNS cache in the node's namespace, as NodeLocal DNSCache runs: it answers
    pods on 169.254.20.10 and asks the cluster DNS server from the node's own address."""
    await ensure_topics(settings.kafka, settings.topics)
    node = f"node-{uuid.uuid4().hex[:6]}"
    dns_start = await end_offsets(settings, DNS.name)
    stats_start = await end_offsets(settings, STATS.name)
    address = ("ip", "addr", "add", f"{NODE_LOCAL_CACHE}/32", "dev", "lo")
    assert dns_net.in_ns(dns_net.node, *address).returncode == 0
    cache = subprocess.Popen(
        ["ip", "netns", "exec", dns_net.node, "dnsmasq", "--keep-in-foreground", "--no-resolv",
         "--no-hosts", "--bind-interfaces", "--user=root", f"--listen-address={NODE_LOCAL_CACHE}",
         f"--server={SERVER_V4}", "--cache-size=0", "--pid-file=",
         f"--log-facility={tmp_path / 'cache.log'}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    command = ["capture", "dns", "--netns", dns_net.node, "--node", node]
    command += ["--flush-interval", "0.5", "--stats-interval", "1"]
    agent = _start_agent(settings, [*command, "--metrics-port", "0"])
    try:
        output = await _capturing(agent)
        assert agent.poll() is None, b"".join(output).decode(errors="replace")
        assert cache.poll() is None, "the node-local cache did not start"
        asked = dns_net.in_ns(dns_net.client, sys.executable, "-c", CACHE_QUERIES)
        assert asked.stdout.split() == ["NOERROR"] * 2, asked.stderr
        batches = await collect(
            settings, DNS.name, dns_start, node, until=lambda found: len(_answers(found)) >= 2
        )

        def dropped_to_server(stats: list[CaptureStats]) -> bool:
            folds = [s.stages.get("dns.fold", StageStats()) for s in stats]
            return sum(f.dropped.get("to_dns_server", 0) for f in folds) >= 2

        stats = await collect(settings, STATS.name, stats_start, node, until=dropped_to_server)
    finally:
        agent.send_signal(signal.SIGINT)
        agent.wait(timeout=20)
        cache.terminate()
        cache.wait(timeout=10)
        dns_net.in_ns(dns_net.node, "ip", "addr", "del", f"{NODE_LOCAL_CACHE}/32", "dev", "lo")

    answers = _answers(batches)
    assert sorted((a.qname, a.client_ip, a.server_ip) for a in answers) == [
        ("api.stripe.com", CLIENT_V4, NODE_LOCAL_CACHE),
        ("cartservice.shop.svc.cluster.local", CLIENT_V4, NODE_LOCAL_CACHE),
    ]  # and none to the node: before, both lookups were also node -> name answers
    assert dropped_to_server(stats)


BIG_SERVER = "10.77.0.54"  # a second address of the server's namespace, for a DNS server of its own
BIG_NAME = "big.shop.svc.cluster.local"
BIG_ADDRESSES = [f"10.96.{i // 200}.{i % 200 + 1}" for i in range(400)]  # about 6.5 kB over TCP

BIG_QUERY = f"""
import dns.message, dns.query, dns.rcode
reply = dns.query.tcp(dns.message.make_query("{BIG_NAME}", "A"), "{BIG_SERVER}", timeout=5)
print(dns.rcode.to_text(reply.rcode()), sum(len(r) for r in reply.answer))
"""


async def test_a_tcp_answer_longer_than_one_segment_arrives_whole(
    dns_net: DnsNet, settings: Settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """A real DNS server's 400-address answer over TCP crosses the node in several
    segments; the agent reassembles it into one answer with every address."""
    await ensure_topics(settings.kafka, settings.topics)
    node = f"node-{uuid.uuid4().hex[:6]}"
    dns_start = await end_offsets(settings, DNS.name)
    hosts = tmp_path / "big.hosts"
    hosts.write_text("".join(f"{ip} {BIG_NAME}\n" for ip in BIG_ADDRESSES))
    interface = f"{dns_net.prefix}srv0"
    added = dns_net.in_ns(dns_net.server, "ip", "addr", "add", f"{BIG_SERVER}/24", "dev", interface)
    assert added.returncode == 0, added.stderr
    # One segment per packet, as on a wire: a veth otherwise passes a TCP send of many
    # segments as one large frame (GSO), and capture would see the answer whole.
    segmented = dns_net.in_ns(dns_net.server, "ip", "link", "set", interface, "gso_max_segs", "1")
    assert segmented.returncode == 0, segmented.stderr
    server = subprocess.Popen(
        ["ip", "netns", "exec", dns_net.server, "dnsmasq", "--keep-in-foreground", "--no-resolv",
         "--no-hosts", f"--addn-hosts={hosts}", "--bind-interfaces", "--user=root",
         f"--listen-address={BIG_SERVER}", "--pid-file=", f"--log-facility={tmp_path / 'big.log'}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    command = ["capture", "dns", "--netns", dns_net.node, "--node", node]
    command += ["--flush-interval", "0.5", "--metrics-port", "0"]
    agent = _start_agent(settings, command)
    try:
        output = await _capturing(agent)
        assert server.poll() is None, "the big server did not start"
        assert agent.poll() is None, b"".join(output).decode(errors="replace")
        asked = dns_net.in_ns(dns_net.client, sys.executable, "-c", BIG_QUERY)
        assert asked.stdout.split() == ["NOERROR", str(len(BIG_ADDRESSES))], asked.stderr
        batches = await collect(
            settings, DNS.name, dns_start, node, until=lambda found: len(_answers(found)) >= 1
        )
    finally:
        agent.send_signal(signal.SIGINT)
        agent.wait(timeout=20)
        server.terminate()
        server.wait(timeout=10)
        dns_net.in_ns(dns_net.server, "ip", "addr", "del", f"{BIG_SERVER}/24", "dev", interface)
        dns_net.in_ns(dns_net.server, "ip", "link", "set", interface, "gso_max_segs", "65535")

    (answer,) = _answers(batches)
    assert (answer.qname, answer.transport, answer.client_ip) == (BIG_NAME, "tcp", CLIENT_V4)
    assert sorted(answer.answers) == sorted(BIG_ADDRESSES)  # before: lost as tcp_partial
