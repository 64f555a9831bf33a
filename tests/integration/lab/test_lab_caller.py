"""The caller's log (the labs' second truth), its release file and its UDP calls, over loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from devtools.process import free_port
from lab.caller import LOG_INTERVAL, CallLog, CallState

pytestmark = pytest.mark.kernel


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_log_writes_the_first_of_each_outcome_then_thins_repeats(tmp_path: Path) -> None:
    now = [100.0]
    log = CallLog(str(tmp_path / "logs" / "a.jsonl"), "ns/pod", clock=lambda: now[0])
    state = CallState({"to": "svc", "port": 80})
    state.last_addr = "10.0.0.1"
    log.record(state, True, "pong ns/server-1")
    log.record(state, True, "pong ns/server-1")  # a repeat within the interval
    log.record(state, True, "pong ns/server-2")  # another answer: written
    now[0] += LOG_INTERVAL
    log.record(state, True, "pong ns/server-1")  # the interval is over
    state.last_addr = None
    log.record(state, False, None, error="gaierror: no name")
    log.record(state, True, "pong ns/server-1", opened=99.0)  # a long-lived connection
    log.close()
    lines = _lines(tmp_path / "logs" / "a.jsonl")
    assert [(line["t"], line["peer"], line["ok"]) for line in lines] == [
        (100.0, "pong ns/server-1", True),
        (100.0, "pong ns/server-2", True),
        (105.0, "pong ns/server-1", True),
        (105.0, None, False),
        (105.0, "pong ns/server-1", True),
    ]
    assert lines[0] == {
        "t": 100.0,
        "pod": "ns/pod",
        "to": "svc",
        "addr": "10.0.0.1",
        "port": 80,
        "ok": True,
        "peer": "pong ns/server-1",
    }
    assert lines[3]["addr"] is None and lines[3]["error"] == "gaierror: no name"
    assert lines[4]["opened"] == 99.0


def test_a_held_caller_from_its_environment_logs_once_the_release_file_exists(
    tmp_path: Path,
) -> None:
    port, closed = free_port(), free_port()
    release, log = tmp_path / "release", tmp_path / "calls.jsonl"
    spec = {
        "pod": "t/p",
        "listen": [port],
        "hold": True,
        "release_file": str(release),
        "log": str(log),
        "calls": [
            {"to": "127.0.0.1", "port": port, "rate": 20, "long_lived": False, "family": "4"},
            {"to": "127.0.0.1", "port": closed, "rate": 20, "long_lived": False, "family": "4"},
        ],
    }
    env = {**os.environ, "LAB_SPEC": json.dumps(spec)}
    caller = subprocess.Popen([sys.executable, "-m", "lab.caller", "--env", "LAB_SPEC"], env=env)
    try:
        time.sleep(1.0)
        assert not log.exists() or log.read_text() == ""  # held: nothing called yet
        release.touch()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if log.exists() and len(log.read_text().splitlines()) >= 2:
                break
            time.sleep(0.1)
        lines = {line["port"]: line for line in _lines(log)}
        assert lines[port]["ok"] is True and lines[port]["peer"] == "pong t/p"
        assert lines[port]["addr"] == "127.0.0.1" and lines[port]["pod"] == "t/p"
        assert lines[closed]["ok"] is False and lines[closed]["peer"] is None
        assert "ConnectionRefusedError" in lines[closed]["error"]
        assert len(_lines(log)) == 2  # 20 calls a second, two outcomes: two lines
    finally:
        caller.send_signal(signal.SIGTERM)
        assert caller.wait(timeout=10) == 0


def test_a_udp_call_is_one_datagram_answered_and_logged_like_a_tcp_call(tmp_path: Path) -> None:
    """A datagram to a UDP port the caller serves is answered by the pod; to a port nobody
    serves, the ICMP unreachable fails it at once. Both logged with ``protocol: udp``;
    a TCP call beside them logs as ever."""
    served, closed, tcp = free_port(), free_port(), free_port()
    log = tmp_path / "calls.jsonl"
    spec = {
        "pod": "t/p",
        "listen": [tcp],
        "listen_udp": [served],
        "log": str(log),
        "calls": [
            {"to": "127.0.0.1", "port": served, "rate": 20, "long_lived": False, "protocol": "udp"},
            {"to": "::1", "port": served, "rate": 20, "long_lived": False, "protocol": "udp"},
            {"to": "127.0.0.1", "port": closed, "rate": 20, "long_lived": False, "protocol": "udp"},
            {"to": "127.0.0.1", "port": tcp, "rate": 20, "long_lived": False},
        ],
    }
    env = {**os.environ, "LAB_SPEC": json.dumps(spec)}
    caller = subprocess.Popen([sys.executable, "-m", "lab.caller", "--env", "LAB_SPEC"], env=env)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if log.exists() and len(log.read_text().splitlines()) >= 4:
                break
            time.sleep(0.1)
        lines = {(line["addr"], line["port"]): line for line in _lines(log)}
        assert lines[("127.0.0.1", served)] == {
            "t": lines[("127.0.0.1", served)]["t"],
            "pod": "t/p",
            "to": "127.0.0.1",
            "addr": "127.0.0.1",
            "port": served,
            "ok": True,
            "peer": "pong t/p",
            "protocol": "udp",
        }
        assert lines[("::1", served)]["ok"] is True and lines[("::1", served)]["peer"] == "pong t/p"
        refused = lines[("127.0.0.1", closed)]
        assert refused["ok"] is False and refused["protocol"] == "udp"
        assert "ConnectionRefusedError" in refused["error"]
        assert "protocol" not in lines[("127.0.0.1", tcp)] and lines[("127.0.0.1", tcp)]["ok"]
        assert len(_lines(log)) == 4  # 20 calls a second each, one outcome each: four lines
    finally:
        caller.send_signal(signal.SIGTERM)
        assert caller.wait(timeout=10) == 0


def _wait_until_udp_bound(port: int, server: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Until an IPv4 UDP socket of this namespace is bound to ``port`` (read from the
    kernel's table): a datagram sent earlier finds no socket and is dropped."""
    wanted = f":{port:04X}"
    deadline = time.monotonic() + timeout
    while not any(
        line.split()[1].endswith(wanted)
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]
    ):
        assert server.poll() is None, "the server exited"
        assert time.monotonic() < deadline, f"nothing bound UDP port {port}"
        time.sleep(0.05)


def test_a_datagram_is_answered_from_the_address_it_was_sent_to(tmp_path: Path) -> None:
    """A namespace with many addresses (the lab's internet) answers each from the one
    asked; a connected client socket drops an answer from any other."""
    port = free_port()
    spec = {"pod": "internet", "listen_udp": [port]}
    env = {**os.environ, "LAB_SPEC": json.dumps(spec)}
    server = subprocess.Popen([sys.executable, "-m", "lab.caller", "--env", "LAB_SPEC"], env=env)
    try:
        _wait_until_udp_bound(port, server)  # a loaded machine takes seconds to start it
        for address in ("127.0.0.1", "127.0.0.2"):  # loopback holds all of 127/8
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.settimeout(10)
                client.sendto(b"ping t/c\n", (address, port))
                answer, sender = client.recvfrom(512)
            assert (answer, sender) == (b"pong internet\n", (address, port))
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
