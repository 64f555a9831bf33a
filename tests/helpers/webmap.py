"""``callmap serve`` as a process, its event stream read as a browser reads it, and a
headless Chromium (Debian's, driven by Playwright) for the page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from devtools.process import accepts_connections, free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # no connection leaves the machine: without these Chromium dials Google's hosts
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def served_map(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``callmap serve ARGS`` as a process, once it listens: its base URL. Stopped after."""
    port = free_port()
    command = [sys.executable, "-m", "callmap", "serve", "--port", str(port), *args]
    process = subprocess.Popen(
        command, env={**os.environ, **(env or {})}, cwd=ROOT, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while not accepts_connections(port):
            assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "callmap serve never listened"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()


def events(
    url: str, count: int, timeout: float = 30.0, *, later_snapshots: bool = True
) -> list[tuple[str, dict[str, Any]]]:
    """The first ``count`` server-sent events at ``url`` (pings left out) as (name, data).

    Without ``later_snapshots``, a snapshot after the first is left out too: a
    server reading the broker's identity topics sends the page a new snapshot
    whenever pods' labels change there, and the tests share one broker."""
    found: list[tuple[str, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    with urllib.request.urlopen(url, timeout=timeout) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        block: dict[str, str] = {}
        while len(found) < count and time.monotonic() < deadline:
            line = stream.readline().decode().rstrip("\n")
            if line:
                field, _, value = line.partition(": ")
                block[field] = value
                continue
            name = block.get("event")
            again = name == "snapshot" and found and not later_snapshots
            if name not in (None, "ping") and not again:
                found.append((block["event"], json.loads(block["data"])))
            block = {}
    return found


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A headless Chromium with nothing but loopback to talk to: a Playwright Browser."""
    from playwright.async_api import async_playwright

    assert CHROMIUM.exists(), "no /usr/bin/chromium: `make system-deps` installs it"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()
