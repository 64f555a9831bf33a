"""The socket scan through sock_diag, on this machine's kernel.

A process in a network namespace of its own (``unshare --net``) listens on a
v4 wildcard and a v6 wildcard and connects to both from inside. The truth is
``ss -tan`` run in that namespace (iproute2's reading of the kernel, not
callmap's), and the /proc scan of the same namespace must agree with it too.
Needs root.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from capture import sockdiag
from capture.diagscan import DIAG_FAILED, scan_diag
from capture.procnet import TcpState
from capture.procscan import PID_VANISHED, namespace_id, scan_proc
from capture.sockdiag import DiagSockets
from capture.sockroles import ROLE_CLIENT, ROLE_SERVER

pytestmark = pytest.mark.netns

ADDRESS = "10.78.0.1"
V4_PORT, V6_PORT = 5555, 5556
CALLS = 3  # connections to the v4 listener; one more to the v6 one
PROGRAM = f"""
import socket, time
v4 = socket.create_server(("0.0.0.0", {V4_PORT}))
v6 = socket.create_server(("::", {V6_PORT}), family=socket.AF_INET6, dualstack_ipv6=True)
kept = [socket.create_connection(("{ADDRESS}", {V4_PORT})) for _ in range({CALLS})]
kept.append(socket.create_connection(("{ADDRESS}", {V6_PORT})))
kept += [v4.accept()[0] for _ in range({CALLS})] + [v6.accept()[0]]
for sock in kept[: {CALLS} + 1]:
    sock.sendall(b"x" * 1000)
for sock in kept[{CALLS} + 1 :]:
    assert len(sock.recv(1000, socket.MSG_PEEK | socket.MSG_WAITALL)) == 1000
print("ready", flush=True)
time.sleep(120)
"""

AGENT_WITHOUT_CAPABILITIES = """
import asyncio, json, logging, sys
from callmap.counters import Counters
from capture.sockagent import SocketScanner
logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
stage = Counters().stage("sockets")
scanner = SocketScanner(cluster="test", node="n", counters=stage, tcp_info=True,
                        only_netns=frozenset({int(sys.argv[1])}))
first, second = asyncio.run(scanner.scan_once()), asyncio.run(scanner.scan_once())
print(json.dumps({
    "reported": len(first),
    "health": [o.health is not None for o in first],
    "dropped": dict(stage.dropped),
}))
"""

SCAN_WITHOUT_CAPABILITIES = """
import json, sys
from capture.diagscan import scan_diag
scan = scan_diag("/proc", only_netns=frozenset({int(sys.argv[1])}))
(ns,) = scan.result.namespaces
print(json.dumps({
    "connections": sorted([c.local_ip, c.local_port, c.remote_ip, c.remote_port, c.role]
                          for c in ns.connections),
    "counters": scan.result.counters,
    "dumped": sorted(scan.sockets),
}))
"""


@contextmanager
def busy_namespace() -> Iterator[int]:
    """A process with listeners and connections in a network namespace of its own; its pid."""
    inside = (
        "ip link set lo up && ip link add d0 type veth peer name d1 && "
        f"ip addr add {ADDRESS}/24 dev d0 && ip link set d0 up && ip link set d1 up && "
        f"exec {sys.executable} -c '{PROGRAM}'"
    )
    process = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", inside], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        yield process.pid
    finally:
        process.kill()
        process.wait()


def ss_in(pid: int) -> tuple[set[tuple[str, int]], set[tuple[str, int, str, int]]]:
    """``ss``'s listeners (address, port) and established connections in ``pid``'s namespace."""
    listeners, connections = set(), set()
    for family, wildcard in (("-4", "0.0.0.0"), ("-6", "::")):
        shown = subprocess.run(
            ["nsenter", "-t", str(pid), "-n", "ss", family, "-tanH"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        for line in shown.splitlines():
            state, _, _, local, peer = line.split()[:5]
            local_ip, local_port = endpoint(local, wildcard)
            if state == "LISTEN":
                listeners.add((local_ip, local_port))
            elif state == "ESTAB":
                connections.add((local_ip, local_port, *endpoint(peer, wildcard)))
    return listeners, connections


def endpoint(text: str, wildcard: str) -> tuple[str, int]:
    address, _, port = text.rpartition(":")
    address = address.strip("[]").removeprefix("::ffff:")
    return (wildcard if address in ("*", "::") else address), int(port)


def without_capabilities(program: str, netns: int) -> tuple[dict[str, Any], str]:
    """``program``'s JSON line and its standard error, run with ``netns`` as its argument
    by a root process without any capability (as an agent the chart grants too little)."""
    command = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-c"]
    done = subprocess.run(
        [*command, program, str(netns)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


@pytest.fixture(scope="module")
def namespace() -> Iterator[tuple[int, int]]:
    """(pid, namespace id) of the busy namespace."""
    with busy_namespace() as pid:
        yield pid, namespace_id(f"/proc/{pid}")


def test_a_scan_through_sock_diag_finds_what_ss_shows_with_each_sides_role(
    namespace: tuple[int, int],
) -> None:
    pid, netns = namespace
    scan = scan_diag("/proc", only_netns=frozenset({netns}))
    listeners, connections = ss_in(pid)

    (found,) = scan.result.namespaces
    assert (found.netns, found.pid) == (netns, pid)
    assert found.listeners == {("0.0.0.0", V4_PORT), ("::", V6_PORT)} == listeners
    assert {
        (c.local_ip, c.local_port, c.remote_ip, c.remote_port) for c in found.connections
    } == connections
    assert len(connections) == 2 * (CALLS + 1)
    for c in found.connections:
        assert c.role == (ROLE_SERVER if c.local_port in (V4_PORT, V6_PORT) else ROLE_CLIENT)
    assert DIAG_FAILED not in scan.result.counters


def test_it_agrees_with_the_scan_of_the_proc_tables(namespace: tuple[int, int]) -> None:
    _, netns = namespace
    through_diag = scan_diag("/proc", only_netns=frozenset({netns})).result.namespaces
    through_proc = scan_proc("/proc", only_netns=frozenset({netns})).namespaces

    assert [
        (ns.netns, ns.pid, ns.pod_uid, set(ns.connections), ns.listeners) for ns in through_diag
    ] == [(ns.netns, ns.pid, ns.pod_uid, set(ns.connections), ns.listeners) for ns in through_proc]


def test_every_established_socket_comes_with_its_tcp_info(namespace: tuple[int, int]) -> None:
    _, netns = namespace
    sockets = scan_diag("/proc", only_netns=frozenset({netns})).sockets[netns]

    established = [s for s in sockets if s.state == TcpState.ESTABLISHED]
    assert len(established) == 2 * (CALLS + 1)
    assert all(s.rtt_us is not None and s.rtt_us > 0 for s in established)
    receivers = [s for s in established if s.local_port in (V4_PORT, V6_PORT)]
    assert [s.bytes_received for s in receivers] == [1000] * (CALLS + 1)
    assert {s.state for s in sockets} == {TcpState.LISTEN, TcpState.ESTABLISHED}


def test_a_pid_that_has_ended_is_passed_over_for_the_next_of_its_namespace(
    namespace: tuple[int, int], tmp_path: Path
) -> None:
    """A proc root of two pids in the busy namespace: the first shows its tables and
    cgroup but has no ``ns`` left, as a process that ended between the two reads."""
    pid, netns = namespace
    ended = tmp_path / "100"
    ended.mkdir()
    (ended / "net").symlink_to(f"/proc/{pid}/net")
    (ended / "cgroup").write_bytes(Path(f"/proc/{pid}/cgroup").read_bytes())
    (tmp_path / "101").symlink_to(f"/proc/{pid}")

    scan = scan_diag(str(tmp_path))

    (found,) = scan.result.namespaces
    assert (found.netns, found.pid, found.pids) == (netns, 101, (100, 101))
    assert scan.result.counters[PID_VANISHED] == 1
    assert len(found.connections) == 2 * (CALLS + 1)
    assert netns in scan.sockets


def test_without_cap_sys_admin_each_namespace_is_read_from_proc_and_counted(
    namespace: tuple[int, int],
) -> None:
    """Entering a namespace takes CAP_SYS_ADMIN; a scan without it loses no connection."""
    _, netns = namespace
    as_root = scan_diag("/proc", only_netns=frozenset({netns})).result.namespaces[0]
    shown, _ = without_capabilities(SCAN_WITHOUT_CAPABILITIES, netns)
    assert shown["counters"][DIAG_FAILED] == 1
    assert shown["dumped"] == []
    assert shown["connections"] == sorted(
        [c.local_ip, c.local_port, c.remote_ip, c.remote_port, c.role] for c in as_root.connections
    )


def test_an_agent_without_the_capabilities_says_once_why_it_reads_proc(
    namespace: tuple[int, int],
) -> None:
    """--tcp-info without CAP_SYS_ADMIN: every connection is still reported, without
    round-trip times, and one warning says why."""
    _, netns = namespace
    shown, stderr = without_capabilities(AGENT_WITHOUT_CAPABILITIES, netns)
    assert shown["reported"] == 2 * (CALLS + 1)
    assert shown["health"] == [False] * shown["reported"]
    assert shown["dropped"]["tcp_info_unreadable"] == 1  # the second scan reports nothing new
    warnings = [line for line in stderr.splitlines() if "sock_diag" in line]
    assert len(warnings) == 1, stderr
    assert "CAP_SYS_ADMIN" in warnings[0]


def _proc_root_of(pid: int, root: Path, *, enterable: bool) -> None:
    """``root`` as a proc root of one pid, 101, standing for ``pid``: all of it,
    or its tables and cgroup without its ``ns`` (as a process that ended between
    the two reads, and cannot be entered)."""
    shown = root / "101"
    if shown.is_symlink():
        shown.unlink()
    if enterable:
        shown.symlink_to(f"/proc/{pid}")
        return
    shown.mkdir()
    (shown / "net").symlink_to(f"/proc/{pid}/net")
    (shown / "cgroup").write_bytes(Path(f"/proc/{pid}/cgroup").read_bytes())


def test_a_namespace_is_entered_once_and_dumped_through_its_kept_socket(
    namespace: tuple[int, int], tmp_path: Path
) -> None:
    pid, netns = namespace
    _proc_root_of(pid, tmp_path, enterable=True)
    with DiagSockets() as kept:
        first = scan_diag(str(tmp_path), kept=kept)
        _proc_root_of(pid, tmp_path, enterable=False)
        second = scan_diag(str(tmp_path), kept=kept)
        assert netns in kept
    fresh = scan_diag(str(tmp_path))  # its own sockets: it must enter, and cannot
    assert fresh.result.counters[PID_VANISHED] == 1 and netns not in fresh.sockets
    assert PID_VANISHED not in second.result.counters
    assert second.result.namespaces == first.result.namespaces
    assert {s.local_port for s in second.sockets[netns]} >= {V4_PORT, V6_PORT}


def test_the_socket_of_a_namespace_no_longer_found_is_closed(namespace: tuple[int, int]) -> None:
    """A kept socket holds its namespace alive: it goes with the namespace's pids."""
    _, netns = namespace
    fds = len(os.listdir("/proc/self/fd"))
    with DiagSockets() as kept:
        scan_diag("/proc", only_netns=frozenset({netns}), kept=kept)
        assert netns in kept and len(os.listdir("/proc/self/fd")) == fds + 1
        scan_diag("/proc", only_netns=frozenset(), kept=kept)
        assert len(kept) == 0 and len(os.listdir("/proc/self/fd")) == fds


def test_a_failed_dump_closes_its_socket_and_the_next_scan_opens_another(
    namespace: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, netns = namespace
    refused = struct.pack("=IHHII", 16, 99, 0x301, 1, 0)  # a type sock_diag does not know
    with DiagSockets() as kept:
        scan_diag("/proc", only_netns=frozenset({netns}), kept=kept)
        monkeypatch.setattr(sockdiag, "dump_request_both_families", lambda **_: refused)
        monkeypatch.setattr(sockdiag, "dump_request", lambda *_, **__: refused)
        failed = scan_diag("/proc", only_netns=frozenset({netns}), kept=kept)
        assert failed.result.counters[DIAG_FAILED] == 1 and not failed.sockets
        assert len(failed.result.namespaces[0].connections) == 2 * (CALLS + 1)  # from /proc
        assert netns not in kept
        monkeypatch.undo()
        reopened = scan_diag("/proc", only_netns=frozenset({netns}), kept=kept)
        assert DIAG_FAILED not in reopened.result.counters and netns in reopened.sockets
