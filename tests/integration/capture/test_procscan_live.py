"""The parser and the walker on this machine's real kernel output.

Real sockets on loopback: the kernel writes the table, the parser must find
them by port and by inode (``fstat`` of a socket gives the inode /proc shows).
Loopback is dropped in normal scans, so the lower-level parser and
``include_loopback`` are used to see them. The namespace tests start a
listener in a network namespace of its own (``unshare -n``) and stop it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import pytest

from capture.procnet import TcpSocket, TcpState, parse_tcp_table
from capture.procscan import namespace_id, scan_proc
from capture.sockroles import ROLE_CLIENT, ROLE_SERVER, classify

pytestmark = pytest.mark.kernel


@dataclass(frozen=True)
class Pair:
    """A live listener and one connection to it, by port and socket inode."""

    port: int
    client_port: int
    listener: int
    client: int
    server: int


@contextmanager
def connected_pair(family: socket.AddressFamily, listen_on: str, connect_to: str) -> Iterator[Pair]:
    with ExitStack() as stack:
        listener = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
        listener.bind((listen_on, 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = stack.enter_context(socket.create_connection((connect_to, port), timeout=5))
        server = stack.enter_context(listener.accept()[0])
        yield Pair(port, client.getsockname()[1], inode(listener), inode(client), inode(server))


def inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def own_sockets(pair: Pair) -> dict[int, TcpSocket]:
    """This namespace's sockets of ``pair``, by inode, straight from the kernel."""
    with open("/proc/self/net/tcp", "rb") as f4, open("/proc/self/net/tcp6", "rb") as f6:
        table = parse_tcp_table(f4.read() + f6.read())
    wanted = {pair.listener, pair.client, pair.server}
    return {s.inode: s for s in table.sockets if s.inode in wanted}


def ipv6_loopback_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback_works(), reason="no IPv6 loopback here")


def test_the_parser_finds_a_real_listener_and_both_ends_of_its_connection() -> None:
    with connected_pair(socket.AF_INET, "127.0.0.1", "127.0.0.1") as pair:
        found = own_sockets(pair)

    uid = os.getuid()
    assert found[pair.listener] == TcpSocket(
        "127.0.0.1", pair.port, "0.0.0.0", 0, TcpState.LISTEN, pair.listener, uid, False
    )
    assert found[pair.client] == TcpSocket(
        "127.0.0.1",
        pair.client_port,
        "127.0.0.1",
        pair.port,
        TcpState.ESTABLISHED,
        pair.client,
        uid,
        False,
    )
    assert found[pair.server] == TcpSocket(
        "127.0.0.1",
        pair.port,
        "127.0.0.1",
        pair.client_port,
        TcpState.ESTABLISHED,
        pair.server,
        uid,
        False,
    )


def test_roles_on_real_kernel_output() -> None:
    with connected_pair(socket.AF_INET, "127.0.0.1", "127.0.0.1") as pair:
        found = list(own_sockets(pair).values())

    kept = classify(found, include_loopback=True).connections
    assert {(c.inode, c.role) for c in kept} == {
        (pair.client, ROLE_CLIENT),
        (pair.server, ROLE_SERVER),
    }
    assert classify(found).connections == ()


@needs_ipv6
def test_a_real_v6_wildcard_listener_shows_its_ipv4_clients_as_ipv4() -> None:
    with connected_pair(socket.AF_INET6, "::", "127.0.0.1") as pair:
        found = own_sockets(pair)

    listener, accepted = found[pair.listener], found[pair.server]
    assert (listener.local_ip, listener.local_port, listener.ipv6) == ("::", pair.port, True)
    assert (accepted.local_ip, accepted.local_port, accepted.ipv6) == ("127.0.0.1", pair.port, True)
    kept = classify(list(found.values()), include_loopback=True).connections
    assert {(c.inode, c.role) for c in kept} == {
        (pair.client, ROLE_CLIENT),
        (pair.server, ROLE_SERVER),
    }


@needs_ipv6
def test_a_real_ipv6_connection() -> None:
    with connected_pair(socket.AF_INET6, "::1", "::1") as pair:
        found = own_sockets(pair)

    assert (found[pair.listener].local_ip, found[pair.listener].local_port) == ("::1", pair.port)
    client = found[pair.client]
    assert (client.local_port, client.remote_ip, client.remote_port) == (
        pair.client_port,
        "::1",
        pair.port,
    )


def test_a_real_scan_finds_this_processs_namespace_and_sockets() -> None:
    with connected_pair(socket.AF_INET, "127.0.0.1", "127.0.0.1") as pair:
        result = scan_proc("/proc", include_loopback=True)

    ours = next(ns for ns in result.namespaces if os.getpid() in ns.pids)
    assert ("127.0.0.1", pair.port) in ours.listeners
    assert {(c.inode, c.role) for c in ours.connections} >= {
        (pair.client, ROLE_CLIENT),
        (pair.server, ROLE_SERVER),
    }


LISTEN_PORT = 5555
LISTENER = f"""
import socket, time
server = socket.create_server(("127.0.0.1", {LISTEN_PORT}))
print("listening", flush=True)
time.sleep(120)
"""


@contextmanager
def listener_in_its_own_namespace() -> Iterator[int]:
    """A process listening on loopback in a new network namespace; its pid."""
    inside = f"ip link set lo up && exec {sys.executable} -c '{LISTENER}'"
    command = ["unshare", "--net", "sh", "-c", inside]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "listening\n"
        yield process.pid
    finally:
        process.kill()
        process.wait()


def namespaces_two_ways() -> tuple[list[list[int]], list[list[int]]]:
    """Every pid grouped by the kernel's namespace inode (its ``ns/net`` link) and by
    the scan's id (the inode of its ``net/tcp``); pids either cannot read are left out."""
    by_link: dict[str, list[int]] = {}
    by_table: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        base = f"/proc/{name}"
        try:
            link, table = os.readlink(f"{base}/ns/net"), namespace_id(base)
        except OSError:
            continue
        by_link.setdefault(link, []).append(int(name))
        by_table.setdefault(table, []).append(int(name))
    return sorted(map(sorted, by_link.values())), sorted(map(sorted, by_table.values()))


def test_the_scans_namespace_id_groups_processes_as_the_kernels_namespace_inode() -> None:
    with listener_in_its_own_namespace():
        by_link, by_table = namespaces_two_ways()
    assert len(by_link) >= 2
    assert by_table == by_link


SCAN_WITHOUT_CAPABILITIES = """
import json, sys
from capture.procscan import scan_proc
pid = int(sys.argv[1])
status = open("/proc/self/status").read()
result = scan_proc("/proc", include_loopback=True)
try:
    open(f"/proc/{pid}/environ", "rb").read()
    environ = "read"
except PermissionError:
    environ = "denied"
print(json.dumps({
    "effective": status.split("CapEff:")[1].split()[0],
    "listeners": [sorted(map(list, ns.listeners)) for ns in result.namespaces if pid in ns.pids],
    "environ": environ,
}))
"""


def test_a_scan_with_no_capability_sees_other_namespaces_sockets_but_not_their_environ() -> None:
    """As the agent runs in the chart: root, without CAP_SYS_PTRACE (here without any)."""
    with listener_in_its_own_namespace() as pid:
        command = ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]
        command += [sys.executable, "-c", SCAN_WITHOUT_CAPABILITIES, str(pid)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    found = json.loads(done.stdout)
    assert found["effective"] == "0000000000000000"
    assert found["listeners"] == [[["127.0.0.1", LISTEN_PORT]]]
    assert found["environ"] == "denied"
