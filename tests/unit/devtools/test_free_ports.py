"""free_port and free_ports: ports for servers started later, given to nobody meanwhile."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import process
from devtools.process import free_port, free_ports


def _ephemeral_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def _bind(port: int, kind: socket.SocketKind) -> None:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", port))


def test_a_free_port_is_below_the_ephemeral_range_and_takes_tcp_and_udp() -> None:
    low, _ = _ephemeral_range()
    for _ in range(20):
        port = free_port()
        assert 1024 <= port < low
        _bind(port, socket.SOCK_STREAM)
        _bind(port, socket.SOCK_DGRAM)


def test_a_block_of_ports_is_consecutive_and_free() -> None:
    low, _ = _ephemeral_range()
    first = free_ports(6)
    assert first + 6 <= low
    for port in range(first, first + 6):
        _bind(port, socket.SOCK_STREAM)


def test_no_port_is_handed_out_twice() -> None:
    ports = [free_port() for _ in range(300)]
    first = free_ports(3)
    assert len(set(ports)) == len(ports)
    assert not set(ports) & {first, first + 1, first + 2}


@pytest.fixture
def listener() -> Iterator[int]:
    """A port someone listens on, below the ephemeral range."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", free_port()))
        server.listen()
        yield server.getsockname()[1]


def test_a_port_in_use_is_skipped(listener: int, monkeypatch: pytest.MonkeyPatch) -> None:
    process.unclaim(f"port-{listener}")  # as if another process had bound it, and ended
    # A block free now and given up again, for the third pick: a fixed one (the
    # listener's port plus 50) may be another test worker's broker by then.
    spare = free_ports(2)
    for port in (spare, spare + 1):
        process.unclaim(f"port-{port}")
    picks = iter([listener, listener - 1, spare])
    monkeypatch.setattr(random, "randrange", lambda *_: next(picks))
    assert free_ports(2) == spare  # the block below the listener overlaps it too


def test_a_port_another_process_holds_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from devtools.process import free_port;"
            " print(free_port(), flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert other.stdout is not None and other.stdin is not None
    held = int(other.stdout.readline())  # picked, not bound yet: only its claim says so
    spare = free_port()
    process.unclaim(f"port-{spare}")
    picks = [held, spare]
    monkeypatch.setattr(random, "randrange", lambda *_: picks.pop(0))
    assert free_port() == spare
    other.stdin.close()  # the other process ends, and its claims with it
    other.wait(10)
    picks = [held]
    assert free_port() == held


def test_a_ports_claim_lapses_once_its_server_has_had_time_to_bind_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(process, "PORT_CLAIM_SECONDS", 0.01)
    port = free_port()
    assert not process.claim(f"port-{port}")
    time.sleep(0.02)
    free_port()
    assert process.claim(f"port-{port}")  # anyone's again
    process.unclaim(f"port-{port}")


def test_without_an_ephemeral_range_the_kernel_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "_ephemeral_start", lambda: 0)
    low, high = _ephemeral_range()
    assert low <= free_port() <= high
