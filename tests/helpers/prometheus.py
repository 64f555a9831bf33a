"""A real Prometheus (Debian's ``prometheus``) scraping ``callmap metrics``, and PromQL.

The server runs as a process of its own on a free loopback port, with a
generated configuration that scrapes the given targets every second and its
data in a temporary directory; it is stopped by the pid it was started with.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.process import accepts_connections, free_port

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def running_prometheus(targets: list[str], directory: Path) -> Iterator[str]:
    """Prometheus scraping ``targets`` (``host:port``); yields its base URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: apt-get install prometheus (make system-deps)")
    port = free_port()
    config = directory / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: callmap\n"
        f"    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
    )
    log = (directory / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # It listens before it is ready (its storage opened) and answers queries
        # 503 Service Unavailable until then: wait for /-/ready.
        deadline = time.monotonic() + 60
        while not _ready(base):
            assert process.poll() is None, (directory / "prometheus.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "prometheus never became ready"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=5) as answer:
            return bool(answer.status == 200)
    except OSError:  # not listening yet (URLError), or 503 while it starts (HTTPError)
        return False


def started_exporter(kafka_bootstrap: str, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """``callmap metrics ARGS`` as a process, once it listens: the process and its port."""
    port = free_port()
    env = {**os.environ, "CALLMAP_KAFKA_BOOTSTRAP": kafka_bootstrap}
    command = [sys.executable, "-m", "callmap", "metrics", "--metrics-port", str(port), *args]
    process = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not accepts_connections(port):
        assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "callmap metrics never listened"
        time.sleep(0.1)
    return process, port


def query(base: str, promql: str) -> list[dict[str, Any]]:
    """The instant vector ``promql`` evaluates to: each sample's labels and value."""
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as answer:
        body = json.load(answer)
    assert body["status"] == "success", body
    return [
        {"labels": sample["metric"], "value": float(sample["value"][1])}
        for sample in body["data"]["result"]
    ]


def wait_for(base: str, promql: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """``promql``'s samples once there are at least ``count`` of them (scrapes take a while)."""
    deadline = time.monotonic() + timeout
    while len(samples := query(base, promql)) < count and time.monotonic() < deadline:
        time.sleep(0.5)
    return samples
