"""The shipped socket filter, attached in the real kernel.

Two network namespaces joined by a veth: a DNS-server side sends datagrams,
TCP segments and hand-made frames; the capture side holds an AF_PACKET socket
with the filter, one without it, and a filtered one on loopback. The filtered
socket must get exactly the frames of the unfiltered one that come from port 53.
Needs root and ``ip netns``; skipped loudly otherwise.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    _IPv6ExtHdr,
)
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from capture.bpf import attach_filter

pytestmark = pytest.mark.netns

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 0x10
CLONE_NEWNET = 0x40000000
AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata

CAP_MAC, PEER_MAC = "02:00:00:00:35:01", "02:00:00:00:35:02"
CAP4, PEER4, CAP6, PEER6 = "10.53.0.1", "10.53.0.2", "fd53::1", "fd53::2"


@dataclass
class Captured:
    filtered: list[bytes] = field(default_factory=list)
    unfiltered: list[bytes] = field(default_factory=list)
    vlan_tags: list[int | None] = field(default_factory=list)  # per unfiltered frame
    loopback: list[bytes] = field(default_factory=list)
    late: list[bytes] = field(default_factory=list)  # filter attached after traffic


def _ip(command: str) -> None:
    subprocess.run(["ip", *command.split()], check=True, capture_output=True, text=True, timeout=10)


def _in_netns(netns: str, make: Callable[[], socket.socket]) -> socket.socket:
    """Create a socket inside ``netns``; it stays there whichever thread uses it."""
    made: list[socket.socket | BaseException] = []

    def enter_and_make() -> None:  # setns moves only the calling thread
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{netns}", "rb") as handle:
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns({netns})")
            made.append(make())
        except BaseException as error:
            made.append(error)

    thread = threading.Thread(target=enter_and_make)
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


def _drain(sock: socket.socket) -> Iterator[tuple[bytes, list[tuple[int, int, bytes]]]]:
    while True:
        try:
            data, ancillary, _, _ = sock.recvmsg(1 << 18, 1024, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError as error:
            # Taking the link down reports ENETDOWN once; the queued frames stay.
            if error.errno != errno.ENETDOWN:
                raise
            continue
        yield data, ancillary


def _vlan_from_auxdata(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if (level, kind) == (SOL_PACKET, PACKET_AUXDATA):
            status, *_, tci, _tpid = AUXDATA.unpack(data[: AUXDATA.size])
            return tci & 0x0FFF if status & TP_STATUS_VLAN_VALID else None
    return None


def _send_traffic(cap: str, peer: str, veth_peer: str) -> None:
    def udp(family: int, src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> None:
        with _in_netns(peer, lambda: socket.socket(family, socket.SOCK_DGRAM)) as sock:
            sock.bind(src)
            sock.sendto(payload, dst)

    for family, name, here, there in [
        (socket.AF_INET, "udp4", PEER4, CAP4),
        (socket.AF_INET6, "udp6", PEER6, CAP6),
    ]:
        udp(family, (here, 53), (there, 40000), f"cmbpf {name} from port 53".encode())
        udp(family, (here, 41000), (there, 53), f"cmbpf {name} to 53".encode())
        udp(family, (here, 5353), (there, 40001), f"cmbpf {name} from mdns".encode())

    for family, name, server_ip in [
        (socket.AF_INET, "tcp4", PEER4),
        (socket.AF_INET6, "tcp6", PEER6),
    ]:
        listener = _in_netns(peer, lambda f=family: socket.socket(f, socket.SOCK_STREAM))
        listener.bind((server_ip, 53))
        listener.listen(1)
        client = _in_netns(cap, lambda f=family: socket.socket(f, socket.SOCK_STREAM))
        client.settimeout(5)
        listener.settimeout(5)
        with listener, client:
            client.connect((server_ip, 53))
            server, _ = listener.accept()
            with server:
                client.sendall(f"cmbpf {name} query".encode())
                server.recv(100)
                server.sendall(f"cmbpf {name} answer".encode())
            client.recv(100)

    # Hand-made frames: a tag in the frame, and IPv4 fragments.
    eth = Ether(src=PEER_MAC, dst=CAP_MAC)
    first = IP(src=PEER4, dst=CAP4, id=7, flags="MF", frag=0, proto=17)
    later = IP(src=PEER4, dst=CAP4, id=7, frag=3, proto=17)
    tagged = eth / Dot1Q(vlan=42) / IP(src=PEER4, dst=CAP4)
    v6 = eth / IPv6(src=PEER6, dst=CAP6)
    frames = [
        v6 / IPv6ExtHdrHopByHop() / UDP(sport=53, dport=40005) / Raw(b"cmbpf v6 hop-by-hop"),
        v6
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / UDP(sport=53, dport=40005)
        / Raw(b"cmbpf v6 two extensions"),
        v6
        / IPv6ExtHdrFragment(id=9, m=1, offset=0)
        / UDP(sport=53, dport=40005)
        / Raw(b"cmbpf v6 first fragment"),
        v6 / IPv6ExtHdrFragment(id=9, offset=3, nh=17) / Raw(b"\x00\x35\x00\x35cmbpf v6 later"),
        tagged / UDP(sport=53, dport=40002) / Raw(b"cmbpf vlan from port 53"),
        tagged / UDP(sport=5353, dport=40002) / Raw(b"cmbpf vlan from mdns"),
        eth / first / UDP(sport=53, dport=40003) / Raw(b"cmbpf first fragment"),
        eth / later / Raw(b"\x00\x35\x00\x35cmbpf later fragment"),
    ]

    def packet_socket() -> socket.socket:
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)

    with _in_netns(peer, packet_socket) as injector:
        injector.bind((veth_peer, 0))
        for frame in frames:
            injector.send(bytes(frame))


def _send_loopback(cap: str) -> None:
    for sport, marker in [(53, b"cmbpf lo from port 53"), (5353, b"cmbpf lo from mdns")]:
        with _in_netns(cap, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as sock:
            sock.bind(("127.0.0.1", sport))
            sock.sendto(marker, ("127.0.0.1", 40004))


@dataclass(frozen=True)
class Link:
    cap: str  # namespace of the capture agent
    peer: str  # namespace of the DNS server
    veth_cap: str
    veth_peer: str


@contextmanager
def _veth_between_two_namespaces() -> Iterator[Link]:
    """Two fresh namespaces joined by a veth; the capture side is left down."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("KERNEL FILTER NOT TESTED: needs root and iproute2's `ip netns`")
    suffix = secrets.token_hex(3)
    link = Link(f"cmbpf-{suffix}-cap", f"cmbpf-{suffix}-peer", f"cmbpf{suffix}c", f"cmbpf{suffix}p")
    created: list[str] = []
    try:
        for netns in (link.cap, link.peer):
            try:
                _ip(f"netns add {netns}")
            except subprocess.CalledProcessError as error:
                pytest.skip(f"KERNEL FILTER NOT TESTED: `ip netns add` failed: {error.stderr}")
            created.append(netns)
        _ip(
            f"link add {link.veth_cap} address {CAP_MAC} netns {link.cap} type veth"
            f" peer name {link.veth_peer} address {PEER_MAC} netns {link.peer}"
        )
        _ip(f"-n {link.cap} addr add {CAP4}/24 dev {link.veth_cap}")
        _ip(f"-n {link.cap} addr add {CAP6}/64 dev {link.veth_cap} nodad")
        _ip(f"-n {link.peer} addr add {PEER4}/24 dev {link.veth_peer}")
        _ip(f"-n {link.peer} addr add {PEER6}/64 dev {link.veth_peer} nodad")
        _ip(f"-n {link.peer} link set {link.veth_peer} up")
        _ip(f"-n {link.cap} link set lo up")
        yield link
    finally:
        for netns in created:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def captured() -> Iterator[Captured]:
    with _veth_between_two_namespaces() as link, ExitStack() as closing:

        def packet_socket() -> socket.socket:
            return closing.enter_context(socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))

        filtered, unfiltered, loopback, late = (
            _in_netns(link.cap, packet_socket) for _ in range(4)
        )
        attach_filter(filtered)
        attach_filter(loopback)
        unfiltered.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        filtered.bind((link.veth_cap, ETH_P_ALL))
        unfiltered.bind((link.veth_cap, ETH_P_ALL))
        loopback.bind(("lo", ETH_P_ALL))
        late.bind((link.veth_cap, ETH_P_ALL))  # queues unfiltered frames until attached
        # The capture side goes up only now, so both sockets see the same frames.
        _ip(f"-n {link.cap} link set {link.veth_cap} up")

        _send_traffic(link.cap, link.peer, link.veth_peer)
        _send_loopback(link.cap)
        attach_filter(late)
        for sport, marker in [(53, b"cmbpf late from port 53"), (5353, b"cmbpf late from mdns")]:
            with _in_netns(
                link.peer, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            ) as sock:
                sock.bind((PEER4, sport))
                sock.sendto(marker, (CAP4, 40005))
        time.sleep(0.3)  # let softirq deliver the last frames and ICMP errors
        _ip(f"-n {link.cap} link set {link.veth_cap} down")  # nothing new after this

        result = Captured()
        result.filtered = [data for data, _ in _drain(filtered)]
        for data, ancillary in _drain(unfiltered):
            result.unfiltered.append(data)
            result.vlan_tags.append(_vlan_from_auxdata(ancillary))
        result.loopback = [data for data, _ in _drain(loopback)]
        result.late = [data for data, _ in _drain(late)]
        yield result


def comes_from_port_53(frame: bytes) -> bool:
    """The filter's rule, decided by scapy's dissectors instead of byte offsets."""
    l3 = Ether(frame).payload
    if isinstance(l3, Dot1Q):
        l3 = l3.payload
    if not ((isinstance(l3, IP) and l3.frag == 0) or isinstance(l3, IPv6)):
        return False
    l4 = l3.payload
    for _ in range(3):  # up to three IPv6 extension headers, a later fragment ends it
        if not isinstance(l4, _IPv6ExtHdr):
            break
        if isinstance(l4, IPv6ExtHdrFragment) and l4.offset:
            return False
        l4 = l4.payload
    return type(l4) in (UDP, TCP) and l4.sport == 53


def sent(frames: list[bytes], marker: str, by: str = PEER_MAC) -> list[bytes]:
    """Frames sent by ``by`` carrying ``marker`` (not the ICMP errors quoting them)."""
    mac = bytes.fromhex(by.replace(":", ""))
    return [frame for frame in frames if frame[6:12] == mac and marker.encode() in frame]


def test_kernel_keeps_exactly_the_frames_that_come_from_port_53(captured: Captured) -> None:
    assert captured.filtered == [f for f in captured.unfiltered if comes_from_port_53(f)]
    assert len(captured.filtered) < len(captured.unfiltered)


@pytest.mark.parametrize("name", ["udp4", "udp6"])
def test_udp_responses_pass_and_queries_and_other_ports_do_not(
    captured: Captured, name: str
) -> None:
    assert len(sent(captured.filtered, f"cmbpf {name} from port 53")) == 1
    for dropped in (f"cmbpf {name} to 53", f"cmbpf {name} from mdns"):
        assert sent(captured.unfiltered, dropped), "sent but never seen"
        assert not sent(captured.filtered, dropped)


@pytest.mark.parametrize("name", ["tcp4", "tcp6"])
def test_the_servers_tcp_segments_pass_and_the_clients_do_not(
    captured: Captured, name: str
) -> None:
    assert len(sent(captured.filtered, f"cmbpf {name} answer")) == 1
    assert sent(captured.unfiltered, f"cmbpf {name} query", by=CAP_MAC)
    assert not sent(captured.filtered, f"cmbpf {name} query", by=CAP_MAC)
    handshake = [f for f in captured.filtered if TCP in Ether(f) and Ether(f)[TCP].flags == "SA"]
    assert handshake, "the SYN-ACK from port 53 passes too"


def test_a_tagged_response_passes_after_the_kernel_moved_its_tag_to_metadata(
    captured: Captured,
) -> None:
    (frame,) = sent(captured.unfiltered, "cmbpf vlan from port 53")
    tag = captured.vlan_tags[captured.unfiltered.index(frame)]
    assert tag == 42 and Ether(frame).type == 0x0800, "the tag left the frame data"
    assert sent(captured.filtered, "cmbpf vlan from port 53") == [frame]
    assert sent(captured.unfiltered, "cmbpf vlan from mdns")
    assert not sent(captured.filtered, "cmbpf vlan from mdns")


def test_a_first_fragment_passes_and_a_later_one_does_not(captured: Captured) -> None:
    assert len(sent(captured.filtered, "cmbpf first fragment")) == 1
    assert sent(captured.unfiltered, "cmbpf later fragment")
    assert not sent(captured.filtered, "cmbpf later fragment")


def test_ipv6_responses_behind_extension_headers_pass_and_later_fragments_do_not(
    captured: Captured,
) -> None:
    for passing in ("cmbpf v6 hop-by-hop", "cmbpf v6 two extensions", "cmbpf v6 first fragment"):
        assert len(sent(captured.filtered, passing)) == 1, passing
    assert sent(captured.unfiltered, "cmbpf v6 later")
    assert not sent(captured.filtered, "cmbpf v6 later")


def test_loopback_frames_pass_by_their_zeroed_ethernet_header(captured: Captured) -> None:
    assert captured.loopback, "loopback responses reach the filtered socket"
    assert all(b"cmbpf lo from port 53" in frame for frame in captured.loopback)


def test_attaching_discards_the_frames_queued_before_the_filter(captured: Captured) -> None:
    assert len(captured.late) == 1
    assert sent(captured.late, "cmbpf late from port 53") == captured.late
