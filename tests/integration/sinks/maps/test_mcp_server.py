"""``callmap mcp`` as a process, asked by the MCP SDK's own client over stdio and over
streamable HTTP, about the sink corpus's map (the lab's shop, hostile names and all).

What each answer must hold is read off the corpus records directly, not through
callmap's map code."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.sinkcorpus import load_jsonl
from mcp import Client, StdioServerParameters

from callmap.wire import Edge
from devtools.process import accepts_connections, free_port

pytestmark = [pytest.mark.timeout(120)]
ROOT = Path(__file__).resolve().parents[4]
TOOLS = {"who_calls", "what_calls", "new_calls", "call_path", "policy"}


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return load_jsonl("edges", Edge)


@pytest.fixture(scope="module")
def map_file(edges: list[Edge], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mcp") / "edges.jsonl"
    raw = (ROOT / "tests/golden/sinks/input-edges.jsonl").read_bytes()
    path.write_bytes(raw)
    return path


def live(edges: list[Edge]) -> list[Edge]:
    return [e for e in edges if e.event != "expired"]


def rows(result: Any) -> list[dict[str, Any]]:
    assert not result.is_error, result.content
    value: list[dict[str, Any]] = result.structured_content["result"]
    return value


async def ask(client: Client, edges: list[Edge], map_file: Path) -> None:
    tools = (await client.list_tools()).tools
    assert {tool.name for tool in tools} == TOOLS
    assert all(tool.annotations and tool.annotations.read_only_hint for tool in tools)

    # who calls cartservice: every live edge to shop's cartservice, by its name or as
    # the service (the canary behind it answers to that name too)
    expected = sorted(
        e.client.name or ""
        for e in live(edges)
        if "cartservice" in (e.server.name, e.server.service) and e.server.namespace == "shop"
    )
    found = rows(await client.call_tool("who_calls", {"workload": "shop/cartservice"}))
    assert sorted(row["client"].rsplit("/", 1)[-1] for row in found) == expected
    assert len(expected) >= 2

    # what checkoutservice calls, with the ports the records carry
    mine = [e for e in live(edges) if e.client.name == "checkoutservice"]
    found = rows(await client.call_tool("what_calls", {"workload": "checkoutservice"}))
    assert len(found) == len(mine)
    assert sorted(p for row in found for p in row["ports"]) == sorted(
        p for e in mine for p in e.ports
    )

    # new since the latest first sighting: exactly the edges first seen then
    latest = max(e.first_seen for e in live(edges))
    since = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(latest))
    found = rows(await client.call_tool("new_calls", {"since": since}))
    assert len(found) == sum(1 for e in live(edges) if e.first_seen >= int(latest))

    # the path from loadgen to redis follows the records' calls hop by hop
    hops = rows(await client.call_tool("call_path", {"start": "loadgen", "goal": "redis"}))
    names = [hop["client"].rsplit("/", 1)[-1] for hop in hops]
    assert names[0] == "loadgen" and hops[-1]["server"].endswith("/redis")
    pairs = {(e.client.name, e.server.name) for e in live(edges)}
    assert all((a, b) in pairs for a, b in zip(names, [*names[1:], "redis"], strict=True))
    assert rows(await client.call_tool("call_path", {"start": "redis", "goal": "loadgen"})) == []

    # the policy of cartservice admits its callers
    result = await client.call_tool("policy", {"workload": "shop/cartservice"})
    text = result.content[0].text  # type: ignore[union-attr]
    documents = [d for d in yaml.safe_load_all(text) if d]
    assert {d["kind"] for d in documents} == {"NetworkPolicy"}
    assert all(d["metadata"]["namespace"] == "shop" for d in documents)

    # the map resource is what `callmap list` prints
    listing = subprocess.run(
        [sys.executable, "-m", "callmap", "list", "--from", f"jsonl:{map_file}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    resource = await client.read_resource("callmap://map")
    assert resource.contents[0].text == listing.stdout  # type: ignore[union-attr]
    as_json = await client.read_resource("callmap://map.json")
    assert json.loads(as_json.contents[0].text)  # type: ignore[union-attr]


async def test_an_assistant_asks_over_stdio(edges: list[Edge], map_file: Path) -> None:
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "callmap", "mcp", "--from", f"jsonl:{map_file}"],
        cwd=str(ROOT),
    )
    async with Client(server) as client:
        await ask(client, edges, map_file)


async def test_an_assistant_asks_over_streamable_http(edges: list[Edge], map_file: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "callmap", "mcp", "--from", f"jsonl:{map_file}"]
    process = subprocess.Popen(
        [*command, "--transport", "http", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not accepts_connections(port):
            assert process.poll() is None, process.stderr.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the server never listened"
            time.sleep(0.2)
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            await ask(client, edges, map_file)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_without_the_sdk_it_says_how_to_get_it(tmp_path: Path) -> None:
    blocker = tmp_path / "mcp.py"
    blocker.write_text("raise ImportError('the MCP SDK is not installed here')\n")
    done = subprocess.run(
        [sys.executable, "-m", "callmap", "mcp", "--from", f"jsonl:{tmp_path}"],
        cwd=ROOT,
        env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 69, done.stderr
    assert "pip install 'callmap[mcp]'" in done.stderr
