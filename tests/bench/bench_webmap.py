"""Benchmark: the web map of ``callmap serve`` in headless Chromium, by map size.

A map of N workloads (100 per namespace, each calling two others, one in
another namespace, and every tenth an external) is written as a JSON Lines
sink's file and served by ``callmap serve --from jsonl:``; Debian's Chromium,
driven by Playwright, opens the page. Per size, the median of three page
loads of:

- **ready**: navigation to the first render (the snapshot fetched, drawn and
  listed: ``callmap:first-render``);
- **drawing**: the page's own share of it (snapshot received to first render);
- **filter**: picking one namespace, until the page has drawn it;
- **detail**: then un-aggregating to that namespace's workloads (large maps
  start aggregated to namespaces);
- **all**: then dropping the filter: every workload drawn, one node each;
- **refilter**: then picking another namespace on that full drawing;
- **heap**: the page's JavaScript heap once ready.

Baseline in the same run: the smallest map (50 workloads), which measures what
any page load costs here. Run: ``python tests/bench/bench_webmap.py``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

sys.path[:0] = [str(Path(__file__).resolve().parents[i]) for i in (1, 2)]  # tests/, the root
from helpers.webmap import chromium, served_map  # noqa: E402

from callmap.wire import Edge, Endpoint  # noqa: E402

SIZES = (50, 500, 5_000)
RUNS = 3
PER_NAMESPACE = 100


def workload(n: int) -> Endpoint:
    return Endpoint(
        type="workload", namespace=f"ns{n // PER_NAMESPACE}", name=f"w{n}", kind="Deployment"
    )


def map_of(workloads: int) -> list[Edge]:
    edges = []

    def add(client: Endpoint, server: Endpoint, n: int) -> None:
        edges.append(
            Edge(
                edge_id=f"e{len(edges)}",
                event="refresh",
                cluster="bench",
                client=client,
                server=server,
                ports=(8080,),
                sources=("dns",),
                first_seen=1_700_000_000.0 + n,
                last_seen=1_700_100_000.0 + n,
                count=1 + n % 50,
            )
        )

    for n in range(workloads):
        base = n - n % PER_NAMESPACE
        add(workload(n), workload(base + (n + 1) % min(PER_NAMESPACE, workloads - base)), n)
        add(workload(n), workload((n + PER_NAMESPACE) % workloads), n)
        if n % 10 == 0:
            add(workload(n), Endpoint(type="external", dns_name=f"api{n % 37}.example.org"), n)
    return edges


async def one_load(browser: Any, base: str) -> dict[str, float]:
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        await page.goto(base)
        await page.wait_for_selector('body[data-state="ready"]', timeout=120_000)
        marks = await page.evaluate(
            """() => {
              const at = (name) => performance.getEntriesByName(name)[0].startTime;
              return {ready: at('callmap:first-render'),
                      drawing: at('callmap:first-render') - at('callmap:snapshot-received'),
                      heap: performance.memory ? performance.memory.usedJSHeapSize : 0};
            }"""
        )
        timed = {"ready": marks["ready"] / 1000, "drawing": marks["drawing"] / 1000}
        timed["heap"] = marks["heap"] / 2**20
        timed["filter"] = await time_render(page, "#namespace", "ns0")
        aggregated = await page.is_checked("#aggregate")
        timed["detail"] = await time_render(page, "#aggregate", False) if aggregated else 0.0
        # every workload drawn (no namespace filter, not aggregated), then filtered again
        timed["all"] = await time_render(page, "#namespace", "")
        timed["refilter"] = await time_render(page, "#namespace", "ns1")
        return timed
    finally:
        await page.close()


async def time_render(page: Any, control: str, value: object) -> float:
    """Seconds from changing ``control`` to the page having drawn it."""
    return float(
        await page.evaluate(
            """async ([control, value]) => {
              const before = Number(document.body.dataset.renders || 0);
              const element = document.querySelector(control);
              const start = performance.now();
              if (typeof value === 'boolean') element.checked = value;
              else element.value = value;
              element.dispatchEvent(new Event('change', {bubbles: true}));
              while (Number(document.body.dataset.renders || 0) <= before) {
                await new Promise((resolve) => setTimeout(resolve, 5));
              }
              return (performance.now() - start) / 1000;
            }""",
            [control, value],
        )
    )


async def main() -> None:
    console = Console(width=120)
    table = Table(title="callmap serve: the page in headless Chromium (median of 3 loads)")
    columns = ("workloads", "calls", "ready", "drawing", "filter", "detail", "all", "refilter")
    for column in (*columns, "JS heap"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as scratch:
        async with chromium() as browser:
            for size in SIZES:
                edges = map_of(size)
                path = Path(scratch) / f"map-{size}.jsonl"
                path.write_bytes(b"\n".join(msgspec.json.encode(e) for e in edges) + b"\n")
                with served_map("--from", f"jsonl:{path}") as base:
                    loads = [await one_load(browser, base) for _ in range(RUNS)]

                def median(key: str, loads: list[dict[str, float]] = loads) -> float:
                    return statistics.median(load[key] for load in loads)

                table.add_row(
                    f"{size:,}",
                    f"{len(edges):,}",
                    f"{median('ready'):.2f} s",
                    f"{median('drawing'):.2f} s",
                    f"{median('filter'):.2f} s",
                    f"{median('detail'):.2f} s" if median("detail") else "-",
                    f"{median('all'):.2f} s",
                    f"{median('refilter'):.2f} s",
                    f"{median('heap'):.0f} MB",
                )
    console.print(table)
    console.print(
        "ready: navigation to first render; drawing: snapshot received to first render; "
        "filter: one namespace picked; detail: then un-aggregated (maps over 1,500 "
        "workloads start aggregated to namespaces); all: every workload drawn; refilter: a "
        "namespace picked on that. The 50-workload row is the baseline."
    )


if __name__ == "__main__":
    asyncio.run(main())
