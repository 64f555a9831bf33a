"""End to end: the whole pipeline on every bundled lab, against its ground truth.

Each test runs `callmap lab run TOPOLOGY --json` exactly as a user would, on
the session's real Kafka broker: real network namespaces, a real DNS server,
real connections, capture agents in the node namespaces, the inventory
watcher, a stream worker. A test passes only on a perfect match: every true
edge observed, nothing observed that is not true (or tolerated).

The shop's run is then asked through `callmap mcp`, by the MCP SDK's own
client, what each client calls, scraped through `callmap metrics` by a real
Prometheus, and opened in `callmap serve`'s page in a real headless Chromium:
the same truth must come out of all three.

The `--kubernetes` runs register the lab in a real API server of its own and
run the watcher on it (list, watch, owners, leader election) instead of the
inventory file: the same truth must come out.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from helpers.labfixtures import skip_without_root
from helpers.labruns import lab_run
from helpers.prometheus import running_prometheus, started_exporter, wait_for
from helpers.webmap import chromium, served_map
from mcp import Client, StdioServerParameters

from callmap.config import Settings
from callmap.paths import cache_dir

# One run of up to 400 s, plus set-up, must fit.
pytestmark = [pytest.mark.kafka, pytest.mark.netns, pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.mark.parametrize(
    "topology",
    [
        "shop",  # the demo: 14 pods on two nodes, services, externals
        "two-clients",  # Otterize's tutorial shape: two clients, one server, internet names
        "churn",  # a pod dies and its IP goes to another workload while traffic continues
        "long-lived",  # a connection opened before capture starts: the socket scan alone
        "dns-tcp-ipv6",  # DNS over TCP (an answer too large for UDP), AAAA, IPv6 pods
        "statefulset",  # a StatefulSet behind a headless service, called by per-pod names
        "two-nodes",  # pods calling across nodes
        "hard-names",  # dual-stack externals, two names on one CDN address, search paths
        "dns-upstream",  # the cluster DNS forwards to an upstream: its lookups are not calls
    ],
)
def test_the_map_matches_the_truth(settings: Settings, topology: str, tmp_path: Path) -> None:
    skip_without_root()
    report = lab_run(settings, topology)
    assert report["observed"]
    if topology == "shop":
        asyncio.run(an_assistant_sees_the_truth(settings, report))
        prometheus_sees_the_truth(settings, report, tmp_path)
        asyncio.run(a_browser_sees_the_truth(settings, report))


def truth_name(qualified: str) -> str:
    """``callmap mcp``'s ``ns/Kind/name`` as the lab's truth names it (``ns/name``,
    ``service:ns/name``); other names (``external:``, ``ip:``, ``node:``) are alike."""
    parts = qualified.split("/")
    if len(parts) == 3:
        namespace, kind, name = parts
        return f"service:{namespace}/{name}" if kind == "Service" else f"{namespace}/{name}"
    return qualified


def truth_sets(report: dict) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:  # type: ignore[type-arg]
    """The (client, server) pairs the run must show, and those it may show too."""
    must = {(e["client"], e["server"]) for e in report["expected"]}
    may = {(e["client"], e["server"]) for e in report.get("tolerated", [])}
    return must, must | may


def prometheus_sees_the_truth(settings: Settings, report: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    """``callmap metrics`` on the run's edges topic, scraped by a real Prometheus:
    PromQL returns the lab's truth, one series per true edge."""
    bootstrap = settings.kafka.bootstrap_servers
    exporter, port = started_exporter(bootstrap, "--cluster", report["cluster"])
    try:
        with running_prometheus([f"127.0.0.1:{port}"], tmp_path) as prometheus:
            must, may = truth_sets(report)
            promql = f'callmap_edge_sightings_total{{cluster="{report["cluster"]}"}}'
            samples = wait_for(prometheus, promql, len(must))
            prefix = {"external": "external:", "service": "service:"}
            seen = {
                (s["labels"]["client"], prefix.get(s["labels"]["kind"], "") + s["labels"]["server"])
                for s in samples
            }
            assert must <= seen <= may, (seen - may, must - seen)
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)


async def an_assistant_sees_the_truth(settings: Settings, report: dict) -> None:  # type: ignore[type-arg]
    """``callmap mcp`` on the run's edges topic, asked by the MCP SDK's client what each
    of the shop's clients calls: the lab's truth (the plan's edges, any tolerated ones)."""
    must, may = truth_sets(report)
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "callmap", "mcp", "--cluster", report["cluster"]],
        env={**os.environ, "CALLMAP_KAFKA_BOOTSTRAP": settings.kafka.bootstrap_servers},
    )
    clients = sorted({client for client, _ in must if "/" in client and ":" not in client})
    assert len(clients) >= 3, must
    async with Client(server) as assistant:
        for client in clients:
            result = await assistant.call_tool("what_calls", {"workload": client})
            assert not result.is_error, result.content
            rows = result.structured_content["result"]
            assert {truth_name(row["client"]) for row in rows} == {client}
            seen = {(client, truth_name(row["server"])) for row in rows}
            assert {pair for pair in must if pair[0] == client} <= seen <= may, client


async def a_browser_sees_the_truth(settings: Settings, report: dict) -> None:  # type: ignore[type-arg]
    """``callmap serve`` on the run's edges topic, opened in headless Chromium: the
    page's table of calls is the lab's truth."""
    must, may = truth_sets(report)
    cluster = report["cluster"]
    env = {"CALLMAP_KAFKA_BOOTSTRAP": settings.kafka.bootstrap_servers}
    with served_map("--cluster", cluster, env=env) as base:
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(base)
            await page.wait_for_selector('body[data-state="ready"]', timeout=30_000)
            rows = await page.eval_on_selector_all(
                "#calls tbody tr[data-edge-id]",
                "rows => rows.map(r => [r.dataset.client, r.dataset.server])",
            )
            await page.close()

    def name(node: str) -> str:  # the page's CLUSTER:qualified id, as the truth names it
        return truth_name(node.removeprefix(f"{cluster}:"))

    seen = {(name(client), name(server)) for client, server in rows}
    assert must <= seen <= may, (seen - may, must - seen)


def test_udp_calls_are_mapped_with_their_udp_ports_apart_from_tcp_ports(settings: Settings) -> None:
    """UDP datagrams through a Service on another node, to a pod's own address and to an
    internet name, beside a TCP call: perfect against both truths, each UDP port in the
    edge's ``udp_ports`` and never in its ``ports``."""
    skip_without_root()
    report = lab_run(settings, "udp")
    expected = {
        ("web/client", "metrics/statsd"): ([9102], [8125]),  # one edge, both protocols
        ("web/tracer", "metrics/statsd"): ([], [6831]),  # the pod's address, same node
        ("web/client", "external:time.example.net"): ([], [123]),
    }
    for comparison in (report, report["calls"]):  # the plan's truth, the callers' logs
        shown = {(e["client"], e["server"]): e for e in comparison["ports"]["observed"]}
        for pair, (tcp, udp) in expected.items():
            assert (shown[pair]["ports"], shown[pair]["udp_ports"]) == (tcp, udp), shown[pair]
        assert comparison["ports"]["unexpected"] == comparison["ports"]["missing"] == []
    logged = {(e["client"], e["server"]) for e in report["calls"]["expected"]}
    assert set(expected) <= logged


def test_sockets_read_through_sock_diag_make_the_same_map_with_round_trip_times(
    settings: Settings,
) -> None:
    """`--tcp-info`: every agent reads its pods' socket tables through sock_diag, and the
    connections opened before capture started (which only the tables show) are mapped
    as exactly, their edges carrying the round-trip times of their client sockets."""
    skip_without_root()
    report = lab_run(settings, "long-lived", "--tcp-info")
    # The worker looked its queue up before capture started: the edge names the address.
    long_lived = {"app/api -> data/postgres", "app/worker -> ip:198.51.100.80"}
    assert long_lived <= set(report["round_trips"]), report["round_trips"]


def test_a_stream_app_started_late_catches_up_to_the_same_map(settings: Settings) -> None:
    skip_without_root()
    lab_run(settings, "two-clients", "--streams-delay", "20")


def test_a_pending_pod_takes_an_address_only_when_it_gets_it_even_read_late(
    settings: Settings,
) -> None:
    """The replacement exists, Pending, from the start; it gets the reused address at 25 s.
    The stream app starts at 35 s and resolves every event after the fact."""
    skip_without_root()
    lab_run(settings, "pending-reuse", "--streams-delay", "35")


@pytest.mark.kube
@pytest.mark.parametrize(
    "topology",
    [
        "shop",  # the demo, every identity from the API server
        "churn",  # the pod deleted through the API, its IP held by a new pod (a new uid)
        "dns-tcp-ipv6",  # dual-stack pods and services (IPv6 cluster IPs from the API)
    ],
)
def test_the_map_matches_the_truth_through_the_kubernetes_api(
    settings: Settings, kube_binaries: None, topology: str
) -> None:
    skip_without_root()
    report = lab_run(settings, topology, "--kubernetes")
    assert report["observed"]
    # The identities came from the API server: the watcher took the Lease there and listed it.
    watch_log = (cache_dir() / "lab-runs" / report["cluster"] / "watch.log").read_text()
    assert f"leading as lab-run-{report['cluster']}" in watch_log
    assert f"cluster {report['cluster']} ready" in watch_log
