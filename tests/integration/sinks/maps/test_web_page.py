"""The page of ``callmap serve`` in a real headless Chromium (Debian's, driven by
Playwright): it lists the map as text, filters, groups and aggregates the drawing and
the table together, shows a workload's calls and policy, and follows the edges topic
live, without a reload and without moving what is drawn.

What each view must hold is read off the corpus records directly, not through
callmap's map code."""

from __future__ import annotations

import time
import unicodedata
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from helpers.mapedges import workload
from helpers.sinkcorpus import GOLDEN, HOSTILE, load_corpus
from helpers.sinkkafka import create_topics, publish
from helpers.webmap import chromium, served_map

from callmap.config import Settings
from callmap.wire import EDGES, PODS, SERVICES, Edge, PodIdentity

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


def live(edges: Iterable[Edge]) -> list[Edge]:
    return [e for e in edges if e.event != "expired"]


def visible(name: str) -> str:
    """A name as the page shows it: control and format characters as ``\\uXXXX``."""
    return "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cc", "Cf") else c for c in name
    )


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    async with chromium() as browser:
        yield browser


class Page:
    """One tab on the map, with every error the page reports collected."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))

    async def open(self, url: str) -> None:
        await self.page.goto(url)
        await self.page.wait_for_selector('body[data-state="ready"]', timeout=30_000)

    async def rows(self) -> dict[str, dict[str, str]]:
        """The table's calls: edge id -> client, server, change."""
        found = await self.page.eval_on_selector_all(
            "#calls tbody tr[data-edge-id]",
            """rows => rows.map(r => [r.dataset.edgeId, {client: r.dataset.client,
                server: r.dataset.server, change: r.dataset.change || "",
                text: r.textContent}])""",
        )
        return dict(found)

    async def drawn(self, what: str = "Edge") -> set[str]:
        return set(await self.page.evaluate(f"() => window.callmap.visible{what}Ids()"))

    async def after_render(self, action: Any) -> None:
        """Do ``action`` (a coroutine function) and wait until the page drew it."""
        before = int(await self.page.evaluate("() => document.body.dataset.renders || 0"))
        await action()
        await self.page.wait_for_function(
            "(n) => Number(document.body.dataset.renders || 0) > n", arg=before, timeout=20_000
        )


@pytest.fixture
async def tab(browser: Any) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = Page(await context.new_page())
    yield page
    await context.close()
    assert page.errors == []


@pytest.fixture(scope="module")
def corpus_page(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("web") / "edges.jsonl"
    path.write_bytes((GOLDEN / "input-edges.jsonl").read_bytes())
    with served_map("--from", f"jsonl:{path}") as base:
        yield base


async def test_the_page_lists_every_live_call_as_text(
    tab: Page, corpus_page: str, corpus_edges: list[Edge]
) -> None:
    await tab.open(corpus_page)
    rows = await tab.rows()
    assert set(rows) == {e.edge_id for e in live(corpus_edges)}
    assert await tab.drawn() == set(rows)  # the drawing and the table show the same calls
    for edge in live(corpus_edges):
        assert visible(edge.client.name or "") in rows[edge.edge_id]["text"]
    # a hostile name is text, not markup: its <script> is shown and nothing ran; its line
    # break and right-to-left override are shown as escapes
    assert visible(HOSTILE) in "".join(row["text"] for row in rows.values())
    assert "<script>" in visible(HOSTILE)
    assert await tab.page.evaluate("() => document.scripts.length") == 2
    summary = await tab.page.text_content("#summary")
    assert f"{len(rows)} calls" in summary.replace(",", "")


async def test_filters_narrow_the_drawing_and_the_table_together(
    tab: Page, corpus_page: str, corpus_edges: list[Edge]
) -> None:
    await tab.open(corpus_page)
    page = tab.page

    await tab.after_render(lambda: page.select_option("#namespace", "finance"))
    finance = {
        e.edge_id
        for e in live(corpus_edges)
        if "finance" in (e.client.namespace, e.server.namespace)
    }
    assert set(await tab.rows()) == finance == await tab.drawn()
    await tab.after_render(lambda: page.select_option("#namespace", ""))

    await tab.after_render(lambda: page.uncheck("#kind-external"))
    inside = {e.edge_id for e in live(corpus_edges) if e.server.type != "external"}
    assert set(await tab.rows()) == inside == await tab.drawn()
    await tab.after_render(lambda: page.check("#kind-external"))

    await tab.after_render(lambda: page.fill("#workload", "ledger"))
    ledger = {e.edge_id for e in live(corpus_edges) if "ledger" in (e.client.name, e.server.name)}
    assert set(await tab.rows()) == ledger == await tab.drawn()


async def test_grouping_collapses_a_namespace_and_aggregation_draws_namespaces(
    tab: Page, corpus_page: str, corpus_edges: list[Edge]
) -> None:
    await tab.open(corpus_page)
    page = tab.page
    everything = await tab.drawn("Node")
    sides = [side for e in live(corpus_edges) for side in (e.client, e.server)]
    namespaces = {side.namespace for side in sides if side.namespace}
    loose = {(s.type, s.dns_name or s.ip or s.name) for s in sides if not s.namespace}

    await tab.after_render(lambda: page.check("#aggregate"))
    aggregated = await tab.drawn("Node")
    assert {n for n in aggregated if n.startswith("ns:")} == {f"ns:{ns}" for ns in namespaces}
    assert len([n for n in aggregated if not n.startswith("ns:")]) == len(loose)
    assert len(await tab.rows()) == len(live(corpus_edges))  # the table still lists calls
    await tab.after_render(lambda: page.uncheck("#aggregate"))
    assert await tab.drawn("Node") == everything

    await tab.after_render(lambda: page.select_option("#group", "namespace"))
    assert await tab.drawn("Node") == everything  # boxes around them, the same nodes
    toggle = page.locator('#groups button[data-group="ns:finance"]')
    await tab.after_render(toggle.click)
    collapsed = await tab.drawn("Node")
    assert "ns:finance" in collapsed
    assert not [n for n in collapsed if ":finance/" in n]
    await tab.after_render(toggle.click)
    assert await tab.drawn("Node") == everything


async def test_a_workload_shows_who_calls_it_and_its_policy(
    tab: Page, corpus_page: str, corpus_edges: list[Edge]
) -> None:
    await tab.open(corpus_page)
    calls = [e for e in live(corpus_edges) if e.server.name == "ledger"]
    callers = {e.client.name for e in calls}
    ledger = f"prod:finance/{calls[0].server.kind}/ledger"
    await tab.page.locator(f'#calls button[data-node="{ledger}"]').first.click()
    await tab.page.wait_for_function(
        "(n) => document.querySelectorAll('#calls-in li').length === n", arg=len(callers)
    )
    callers_text = await tab.page.text_content("#calls-in")
    assert all(name in callers_text for name in callers if name)
    await tab.page.select_option("#policy-kind", "networkpolicy")
    await tab.page.wait_for_function(
        "() => document.querySelector('#policy').textContent.includes('kind: NetworkPolicy')"
    )
    policy = await tab.page.text_content("#policy")
    for port in {p for e in calls for p in e.ports}:
        assert f"port: {port}" in policy


async def test_a_workloads_l4_health_shows_round_trips_and_marks_the_slow_call(
    tab: Page, corpus_page: str, corpus_edges: list[Edge]
) -> None:
    await tab.open(corpus_page)
    (slow,) = [e for e in live(corpus_edges) if e.health is not None and e.health.rtt is not None]
    assert slow.client.name == "checkoutservice"  # the corpus's call with round trips
    client = f"prod:shop/{slow.client.kind}/{slow.client.name}"
    await tab.page.locator(f'#calls button[data-node="{client}"]').first.click()
    await tab.page.wait_for_function("() => !document.getElementById('health').hidden")
    items = await tab.page.locator("#health-list li").all_text_contents()
    (told,) = [item for item in items if f"{slow.server.name}:" in item]
    assert told.startswith("slow ") and "RTT p50 1.1 ms, p99 240 ms, 6 retransmits" in told


async def test_a_map_of_5000_workloads_opens_by_namespace_and_stays_usable(
    tab: Page, tmp_path: Path
) -> None:
    # 50 namespaces of 100 workloads, each calling the next in its namespace
    edges = [
        Edge(
            edge_id=f"e{n}",
            event="refresh",
            cluster="big",
            client=workload(f"w{n}", f"ns{n // 100}"),
            server=workload(f"w{n - n % 100 + (n + 1) % 100}", f"ns{n // 100}"),
            ports=(8080,),
            first_seen=1e9,
            last_seen=1e9 + n,
        )
        for n in range(5000)
    ]
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\n".join(msgspec.json.encode(e) for e in edges) + b"\n")
    with served_map("--from", f"jsonl:{path}") as base:
        await tab.open(base)
        page = tab.page
        assert await page.is_checked("#aggregate")  # it says so, and draws namespaces
        assert await tab.drawn("Node") == {f"ns:ns{n}" for n in range(50)}
        assert "rows 1–500 of 5,000" in await page.text_content("#rows")
        await tab.after_render(lambda: page.select_option("#namespace", "ns7"))
        await tab.after_render(lambda: page.uncheck("#aggregate"))
        assert await tab.drawn("Node") == {f"big:ns7/Deployment/w{n}" for n in range(700, 800)}
        assert len(await tab.rows()) == 100
        await page.close()


# --- live, from the edges topic ----------------------------------------------------------


@pytest.mark.kafka
async def test_the_page_follows_the_topic_and_shows_what_changed(
    tab: Page, settings: Settings, kafka_bootstrap: str, corpus_edges: list[Edge]
) -> None:
    cluster, now = f"page-{uuid.uuid4().hex[:8]}", time.time()
    expired = next(e for e in corpus_edges if e.event == "expired")
    edges = [
        msgspec.structs.replace(
            e,
            cluster=cluster,
            edge_id=f"{cluster}-{e.edge_id}",
            first_seen=now - 2 * 86400,
            last_seen=now - (1800 if e is expired else 60),
        )
        for e in corpus_edges
    ]
    fresh = edges[0] = msgspec.structs.replace(edges[0], first_seen=now - 600)
    pods = [msgspec.structs.replace(p, cluster=cluster) for p in load_corpus().pods]
    await create_topics(settings, [EDGES, PODS, SERVICES])
    await publish(settings, pods, PODS.name, lambda p: p.uid.encode())
    await publish(settings, edges)

    env = {"CALLMAP_KAFKA_BOOTSTRAP": kafka_bootstrap}
    with served_map("--cluster", cluster, "--refresh", "1", env=env) as base:
        await tab.open(base)
        page = tab.page
        assert set(await tab.rows()) == {e.edge_id for e in live(edges)}
        # labels come from the pods topic (read every --refresh): tier=web is shop's
        # frontend alone; the page gets them without a reload
        labelled = workloads_labelled(pods, "tier", "web")
        expected = {
            e.edge_id
            for e in live(edges)
            if {(e.client.namespace, e.client.name), (e.server.namespace, e.server.name)} & labelled
        }
        assert expected
        await page.fill("#label", "tier=web")
        await page.wait_for_function(
            "(n) => document.querySelectorAll('#calls tbody tr[data-edge-id]').length === n",
            arg=len(expected),
            timeout=20_000,
        )
        assert set(await tab.rows()) == expected
        await tab.after_render(lambda: page.fill("#label", ""))

        before = await page.evaluate("() => window.callmap.nodePositions()")
        await page.evaluate("() => { window.sameDocument = true; }")

        # a new call on the topic: in the table and the drawing, no reload, nothing moved
        newcomer = msgspec.structs.replace(
            fresh,
            edge_id=f"{cluster}-newcomer",
            client=msgspec.structs.replace(fresh.client, name="newcomer"),
            first_seen=now,
            last_seen=now,
        )
        await publish(settings, [newcomer])
        await page.wait_for_selector(f'tr[data-edge-id="{newcomer.edge_id}"]', timeout=20_000)
        assert await page.evaluate("() => window.sameDocument === true")
        assert newcomer.edge_id in await tab.drawn()
        after = await page.evaluate("() => window.callmap.nodePositions()")
        moved = [n for n, at in before.items() if after.get(n) != at]
        assert moved == [] and len(after) == len(before) + 1

        # what changed in the last hour: the two calls first seen in it, the one expired
        await tab.after_render(lambda: page.select_option("#changes", "hour"))
        rows = await tab.rows()
        assert {i for i, r in rows.items() if r["change"] == "new"} == {
            fresh.edge_id,
            newcomer.edge_id,
        }
        assert {i for i, r in rows.items() if r["change"] == "expired"} == {
            f"{cluster}-{expired.edge_id}"
        }
        await tab.after_render(lambda: page.select_option("#changes", "none"))

        # the time slider at its left end: the map as it was when it began
        await tab.after_render(
            lambda: page.eval_on_selector(
                "#time", "s => { s.value = '0'; s.dispatchEvent(new Event('input')); }"
            )
        )
        earliest = min(e.first_seen for e in edges)
        assert set(await tab.rows()) == {e.edge_id for e in edges if e.first_seen <= earliest}
        await page.close()  # before the server goes: its stream would end mid-way


def workloads_labelled(pods: list[PodIdentity], key: str, value: str) -> set[tuple[str, str]]:
    """(namespace, workload) whose every pod carries key=value."""
    members: dict[tuple[str, str], list[PodIdentity]] = {}
    for pod in pods:
        members.setdefault((pod.namespace, pod.workload.name), []).append(pod)
    return {w for w, group in members.items() if all(p.labels.get(key) == value for p in group)}
