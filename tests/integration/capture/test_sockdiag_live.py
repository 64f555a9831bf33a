"""sock_diag on this machine's kernel: real sockets in a fresh network namespace,
dumped, and held to what the sockets say of themselves and to ``ss``.

A listener and its connections are opened by a thread inside the namespace
(sockets keep the namespace they were made in); the truth is each socket's own
``getsockname``/``getpeername``, the inode of its descriptor, the bytes the
test sent through it, and ``ss -tan`` run in the namespace. Needs root and
``ip netns``; skipped otherwise.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from helpers.netns import network_namespaces, wait_for_local_routes

from capture import sockdiag
from capture.inetdiag import DiagSocket, DumpParser, dump_request, dump_request_both_families
from capture.procnet import TcpState
from capture.sniffer import in_netns
from capture.sockdiag import RECV_BUFFER, DiagSockets, dump_here, dump_namespaces

pytestmark = pytest.mark.netns

V4, V6 = "10.77.0.1", "fd77::1"
SENT = 3000  # bytes each client sends its server
LIVE = (TcpState.LISTEN, TcpState.ESTABLISHED)  # what the test's sockets are in


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}"
    return done.stdout


def _canonical(ip: str) -> str:
    return ip.removeprefix("::ffff:") if ip.startswith("::ffff:") and "." in ip else ip


@dataclass
class Net:
    """A namespace with listeners and connections; every socket the test opened."""

    name: str
    empty: str
    listeners: list[socket.socket] = field(default_factory=list)
    pairs: list[tuple[socket.socket, socket.socket]] = field(default_factory=list)
    """(client, accepted) of each connection."""

    def open(self, family: int, bind: str, dial: str, count: int = 1) -> socket.socket:
        """A listener on ``bind`` and ``count`` connections to it at ``dial``,
        made inside the namespace; each client sends SENT bytes, read in full."""

        def make() -> socket.socket:
            listener = socket.socket(family, socket.SOCK_STREAM)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            listener.bind((bind, 0))
            listener.listen(count)
            port = listener.getsockname()[1]
            for _ in range(count):
                client = socket.create_connection((dial, port), timeout=5)
                accepted, _ = listener.accept()
                client.sendall(b"x" * SENT)
                got = 0
                while got < SENT:
                    got += len(accepted.recv(SENT))
                self.pairs.append((client, accepted))
            return listener

        listener = in_netns(self.name, make)
        self.listeners.append(listener)
        return listener

    def close(self) -> None:
        for listener in self.listeners:
            listener.close()
        for client, accepted in self.pairs:
            client.close()
            accepted.close()


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespace tests need root"
    for tool in ("ip", "ss"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    prefix = f"sdx{secrets.token_hex(3)}"
    with network_namespaces(f"{prefix}-a", f"{prefix}-b") as (name, empty):
        _run("ip", "-n", name, "addr", "add", f"{V4}/32", "dev", "lo")
        _run("ip", "-n", name, "addr", "add", f"{V6}/128", "dev", "lo", "nodad")
        wait_for_local_routes(name, V4, V6)
        made = Net(name, empty)
        try:
            made.open(socket.AF_INET, V4, V4)
            made.open(socket.AF_INET6, V6, V6)
            made.open(socket.AF_INET6, "::", V4)  # a dual-stack listener: IPv4-mapped
            made.open(socket.AF_INET, "0.0.0.0", V4, count=300)  # many datagrams
            yield made
        finally:
            made.close()


def _dump(net: Net) -> list[DiagSocket]:
    (found,) = dump_namespaces([net.name])
    assert found.error is None and found.dropped == {}, found
    return found.sockets


def _truth(sock: socket.socket, state: TcpState) -> tuple[object, ...]:
    local = sock.getsockname()
    remote = (
        sock.getpeername()
        if state != TcpState.LISTEN
        else (("::", 0) if ":" in local[0] else ("0.0.0.0", 0))
    )
    return (
        state,
        _canonical(local[0]),
        local[1],
        _canonical(remote[0]),
        remote[1],
        os.fstat(sock.fileno()).st_ino,
        sock.family,
    )


def test_every_socket_is_found_as_it_sees_itself(net: Net) -> None:
    truth = {_truth(listener, TcpState.LISTEN) for listener in net.listeners}
    for client, accepted in net.pairs:
        truth.add(_truth(client, TcpState.ESTABLISHED))
        truth.add(_truth(accepted, TcpState.ESTABLISHED))
    dumped = [s for s in _dump(net) if s.state in LIVE]
    found = {
        (s.state, s.local_ip, s.local_port, s.remote_ip, s.remote_port, s.inode, s.family)
        for s in dumped
    }
    assert len(dumped) == len(truth) == len(net.listeners) + 2 * len(net.pairs) >= 600
    assert found == truth
    # The dual-stack listener's accepted IPv4 connection: an AF_INET6 socket,
    # addresses IPv4-mapped, given as IPv4 (its listener is "::").
    mapped = [s for s in dumped if s.family == socket.AF_INET6 and "." in s.local_ip]
    assert [(s.state, s.local_ip, s.remote_ip) for s in mapped] == [(TcpState.ESTABLISHED, V4, V4)]


def test_one_walk_for_both_families_finds_what_one_a_family_finds(net: Net) -> None:
    def key(s: DiagSocket) -> tuple[object, ...]:
        return (s.family, s.state, s.local_ip, s.local_port, s.remote_ip, s.remote_port, s.inode)

    both, both_dropped = in_netns(net.name, dump_here)
    apart, apart_dropped = in_netns(net.name, lambda: dump_here(one_walk=False))
    assert both_dropped == apart_dropped == {}
    assert sorted(map(key, both)) == sorted(map(key, apart))
    assert {s.family for s in both} == {socket.AF_INET, socket.AF_INET6}


def test_the_loop_in_c_reads_the_kernels_dump_as_the_python_loop_does(net: Net) -> None:
    """This kernel's own datagrams (both families, tcp_info, the attributes it
    adds unasked), read by each loop of :class:`capture.inetdiag.DumpParser`."""

    def datagrams() -> list[bytes]:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, sockdiag.NETLINK_SOCK_DIAG) as nl:
            nl.settimeout(5)
            nl.send(dump_request_both_families())
            got, ended = [], DumpParser(native=False)
            while not got or not ended.feed(got[-1]):
                got.append(nl.recv(RECV_BUFFER))
            return got

    dump = in_netns(net.name, datagrams)
    read = []
    for native in (False, True):
        parser = DumpParser(native=native)
        assert [parser.feed(datagram) for datagram in dump][-1] is True
        read.append((parser.sockets, parser.dropped, parser.error))
    assert read[0] == read[1]
    assert len(read[1][0]) >= len(net.listeners) + 2 * len(net.pairs)
    assert {s.rtt_us is not None for s in read[1][0] if s.state in LIVE} == {True}


def test_the_dump_agrees_with_ss(net: Net) -> None:
    out = _run("ip", "netns", "exec", net.name, "ss", "-Htan")
    names = {"ESTAB": TcpState.ESTABLISHED, "LISTEN": TcpState.LISTEN}
    seen = set()
    for line in out.splitlines():
        state, _rq, _sq, local, peer = line.split()[:5]
        if state not in names:
            continue
        (lip, lport), (pip, pport) = (end.rsplit(":", 1) for end in (local, peer))
        wild = {"*": "::", "[::]": "::"}  # ss shows a dual-stack "::" as "*"
        seen.add(
            (
                names[state],
                _canonical(wild.get(lip, lip).strip("[]")),
                int(lport),
                _canonical(wild.get(pip, pip).strip("[]")),
                0 if pport == "*" else int(pport),
            )
        )
    found = {(s.state, s.local_ip, s.local_port, s.remote_ip, s.remote_port) for s in _dump(net)}
    assert {entry for entry in found if entry[0] in LIVE} == seen
    assert len(seen) >= 600


def test_tcp_info_counts_the_bytes_each_side_sent_and_got(net: Net) -> None:
    by_inode = {s.inode: s for s in _dump(net)}
    for client, accepted in net.pairs:
        sent = by_inode[os.fstat(client.fileno()).st_ino]
        got = by_inode[os.fstat(accepted.fileno()).st_ino]
        # The client's count includes its SYN, acknowledged like a byte.
        assert sent.bytes_acked in (SENT, SENT + 1) and sent.bytes_received == 0, sent
        assert got.bytes_received == SENT and got.bytes_acked in (0, 1), got
        assert sent.segs_out is not None and sent.segs_out >= 2
        assert sent.rtt_us is not None and sent.rtt_us > 0
        assert sent.total_retrans == 0 and sent.uid == 0


def test_a_closed_connection_stays_as_time_wait_without_tcp_info(net: Net) -> None:
    listener = net.open(socket.AF_INET, V4, V4)
    client, accepted = net.pairs.pop()
    net.listeners.remove(listener)
    listener.close()
    # By both ports: another test's client may have the same local port (to another
    # server: the kernel reuses a local port for a different peer).
    ports = (client.getsockname()[1], client.getpeername()[1])
    client.close()  # the active closer: TIME_WAIT once the server has closed too
    assert accepted.recv(1) == b""
    accepted.close()
    deadline = time.monotonic() + 5
    while True:
        waiting = [s for s in _dump(net) if (s.local_port, s.remote_port) == ports]
        if [s.state for s in waiting] == [TcpState.TIME_WAIT] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [(s.state, s.inode, s.rtt_us, s.bytes_acked) for s in waiting] == [
        (TcpState.TIME_WAIT, 0, None, None)
    ]


def test_each_namespace_is_dumped_apart_and_known_by_its_proc_id(net: Net) -> None:
    dumps = dump_namespaces([net.empty, net.name, f"{net.name}-gone", net.empty])
    assert [d.path for d in dumps] == [net.empty, net.name, f"{net.name}-gone", net.empty]
    assert [len(d.sockets) for d in dumps][::2] == [0, 0]
    assert len(dumps[1].sockets) > 600
    assert dumps[2].netns is None and dumps[2].error is not None
    for dump in (dumps[0], dumps[1]):
        proc_id = _run(
            "ip", "netns", "exec", dump.path, "stat", "-L", "-c", "%i", "/proc/self/net/tcp"
        )
        assert dump.netns == int(proc_id)


def _refused(**_: int) -> bytes:
    """A request of a type sock_diag does not know: the kernel answers NLMSG_ERROR."""
    return struct.pack("=IHHII", 16, 99, 0x301, 1, 0)


def test_a_kernel_refusing_the_one_walk_is_asked_a_family_at_a_time(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sockdiag, "dump_request_both_families", _refused)
    refused, dropped = in_netns(net.name, dump_here)
    monkeypatch.undo()
    assert dropped == {}
    assert sorted(s.inode for s in refused) == sorted(
        s.inode for s in in_netns(net.name, dump_here)[0]
    )


def test_a_dump_the_kernel_refuses_is_the_namespaces_error_and_the_pass_goes_on(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sockdiag, "dump_request_both_families", _refused)
    monkeypatch.setattr(sockdiag, "dump_request", lambda family, seq, states: _refused())
    with pytest.raises(sockdiag.DumpError):
        in_netns(net.name, dump_here)
    dumps = dump_namespaces([net.name, net.empty])
    assert [(d.netns is not None, d.sockets) for d in dumps] == [(True, []), (True, [])]
    assert all(d.error and "DumpError" in d.error for d in dumps)


def test_an_empty_read_is_an_error_not_a_spin() -> None:
    """No netlink message is empty; a socket that reads empty is given up on.
    A datagram socket pair stands in for netlink: only it can send nothing."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with ours, theirs:
        ours.settimeout(5)
        theirs.send(b"")
        view = memoryview(bytearray(RECV_BUFFER))
        with pytest.raises(sockdiag.DumpError, match="empty read"):
            sockdiag._read_dump(ours, view, dump_request(socket.AF_INET), DumpParser())


def test_two_threads_dump_what_one_dumps(net: Net) -> None:
    def dumped(threads: int) -> dict[int, list[tuple[object, ...]]]:
        with DiagSockets(threads=threads) as kept:
            ids = [e.netns for e in kept.open([net.name, net.empty])]
            assert None not in ids and len(kept) == 2
            return {
                netns: sorted((s.state, s.local_port, s.remote_port, s.inode) for s in d.sockets)
                for netns, d in kept.dump(i for i in ids if i is not None).items()
            }

    one, two = dumped(1), dumped(2)
    assert one == two and sum(map(len, one.values())) > 600


def test_a_bug_in_a_dumping_thread_is_raised_to_the_caller(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("a bug in the parser")

    with DiagSockets(threads=2) as kept:
        ids = {e.netns for e in kept.open([net.name, net.empty]) if e.netns is not None}
        monkeypatch.setattr(sockdiag, "_dump_on", broken)
        with pytest.raises(RuntimeError, match="a bug in the parser"):
            kept.dump(ids)
