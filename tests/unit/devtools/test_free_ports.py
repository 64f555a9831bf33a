"""free_port and free_ports: ports for servers started later, given to nobody meanwhile."""

from __future__ import annotations

import random
import socket
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
    process._handed_out.discard(listener)  # as if another process had taken it
    picks = iter([listener, listener - 1, listener + 50])
    monkeypatch.setattr(random, "randrange", lambda *_: next(picks))
    assert free_ports(2) == listener + 50  # the block below it overlaps it too


def test_without_an_ephemeral_range_the_kernel_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "_ephemeral_start", lambda: 0)
    low, high = _ephemeral_range()
    assert low <= free_port() <= high
