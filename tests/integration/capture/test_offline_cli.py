"""The offline modes people debug with: a tcpdump capture in, DnsAnswer lines out;
a proc tree in, SocketObservation lines out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import CookedLinux, Dot1Q, Ether
from scapy.packet import Packet
from scapy.utils import PcapNgWriter, wrpcap

from callmap.wire import DnsAnswer, SocketObservation


def _response(qname: str, ip: str, msg_id: int) -> DNS:
    return DNS(
        id=msg_id,
        qr=1,
        qd=[DNSQR(qname=qname)],
        an=[DNSRR(rrname=qname, type="A", rdata=ip, ttl=60)],
    )


def _capture() -> list[Packet]:
    """What `tcpdump -i any` and a VLAN trunk would show: cooked and tagged frames."""
    ip_udp = IP(src="10.96.0.10", dst="10.1.0.7") / UDP(sport=53, dport=41000)
    frames = [
        CookedLinux() / ip_udp / _response("cartservice.shop.svc.cluster.local", "10.96.4.2", 1),
        Ether()
        / Dot1Q(vlan=42)
        / ip_udp
        / _response("ledger.finance.svc.cluster.local", "10.96.7.7", 2),
        CookedLinux() / ip_udp / _response("cartservice.shop.svc.cluster.local", "10.96.4.2", 3),
        CookedLinux()
        / IP(src="10.1.0.7", dst="10.96.0.10")
        / UDP(sport=41000, dport=53)
        / DNS(qd=[DNSQR(qname="x")]),
    ]
    for n, frame in enumerate(frames):
        frame.time = 1_700_000_000.0 + n * 0.1
    return frames


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "callmap", *args], capture_output=True, check=True)


def _answers(stdout: bytes) -> list[DnsAnswer]:
    return [msgspec.json.decode(line, type=DnsAnswer) for line in stdout.splitlines()]


def test_a_pcap_file_prints_one_folded_answer_per_line(tmp_path: Path) -> None:
    pcap = tmp_path / "dns.pcap"
    cooked = [f for f in _capture() if isinstance(f, CookedLinux)]
    wrpcap(str(pcap), cooked)  # one link type per pcap file
    result = _run("capture", "dns", "--pcap", str(pcap), "--output", "jsonl", "--node", "n1")
    (answer,) = _answers(result.stdout)
    assert (answer.node, answer.client_ip, answer.qname, answer.count) == (
        "n1",
        "10.1.0.7",
        "cartservice.shop.svc.cluster.local",
        2,
    )
    assert answer.ts == 1_700_000_000.0
    assert b"dns.frames: seen=3" in result.stderr
    assert b"not_from_port_53=1" in result.stderr


def test_a_full_window_is_flushed_before_its_time(tmp_path: Path) -> None:
    pcap = tmp_path / "dns.pcap"
    cooked = [f for f in _capture() if isinstance(f, CookedLinux)]
    wrpcap(str(pcap), cooked)  # cart, cart again 0.2 s later, a query
    result = _run(
        "capture", "dns", "--pcap", str(pcap), "--output", "jsonl", "--node", "n1",
        "--max-window-answers", "1",
    )  # fmt: skip
    # The window is full at the first answer: the second is a window of its own.
    assert [(a.qname, a.count) for a in _answers(result.stdout)] == [
        ("cartservice.shop.svc.cluster.local", 1),
        ("cartservice.shop.svc.cluster.local", 1),
    ]


def test_a_pcapng_file_with_vlan_tagged_ethernet_frames(tmp_path: Path) -> None:
    pcapng = tmp_path / "dns.pcapng"
    writer = PcapNgWriter(str(pcapng))  # scapy writes one interface: Ethernet frames only
    for frame in _capture():
        writer.write(frame if isinstance(frame, Ether) else Ether() / frame.payload)
    writer.close()
    result = _run("capture", "dns", "--pcap", str(pcapng), "--output", "jsonl", "--node", "n1")
    names = sorted((a.qname, a.count) for a in _answers(result.stdout))
    assert names == [
        ("cartservice.shop.svc.cluster.local", 2),
        ("ledger.finance.svc.cluster.local", 1),
    ]


def test_a_damaged_capture_prints_what_it_could_and_says_why_it_stopped(tmp_path: Path) -> None:
    pcap = tmp_path / "cut.pcap"
    wrpcap(str(pcap), [f for f in _capture() if isinstance(f, CookedLinux)])
    pcap.write_bytes(pcap.read_bytes()[:-20])
    result = _run("capture", "dns", "--pcap", str(pcap), "--output", "jsonl", "--node", "n1")
    assert len(_answers(result.stdout)) == 1
    assert b"capture file: truncated" in result.stderr


# 10.1.0.10:8080 listening; 10.1.0.10:43210 -> 10.1.0.11:7070 (client);
# 10.1.0.12:50000 -> 10.1.0.10:8080 (server side); then a garbage line.
TCP_TABLE = "".join(
    line + "\n"
    for line in (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
        "  timeout inode",
        "   0: 0A00010A:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0"
        "        0 1001 1 0 100 0 0 10 0",
        "   1: 0A00010A:A8CA 0B00010A:1B9E 01 00000000:00000000 00:00000000 00000000     0"
        "        0 1002 1 0 20 4 30 10 -1",
        "   2: 0A00010A:1F90 0C00010A:C350 01 00000000:00000000 00:00000000 00000000     0"
        "        0 1003 1 0 20 4 30 10 -1",
        "garbage line",
    )
)


def _proc_tree(root: Path) -> None:
    """One pod's network namespace: a listener and a client connection."""
    pid = root / "4242"
    (pid / "net").mkdir(parents=True)
    (pid / "cgroup").write_text(
        "0::/kubepods.slice/kubepods-besteffort.slice/"
        "kubepods-besteffort-pod6d0c1f7e_2b1c_4f9e_9a43_3f9b3e1b8a11.slice/cri-containerd-ab.scope\n"
    )
    (pid / "net" / "tcp").write_text(TCP_TABLE)
    (pid / "net" / "tcp6").write_text(TCP_TABLE.splitlines(keepends=True)[0])


def test_a_proc_tree_prints_one_observation_per_connection(tmp_path: Path) -> None:
    _proc_tree(tmp_path)
    result = _run(
        "capture", "sockets", "--proc", str(tmp_path), "--once", "--output", "jsonl", "--node", "n1"
    )
    records = [
        msgspec.json.decode(line, type=SocketObservation) for line in result.stdout.splitlines()
    ]
    by_role = {r.role: r for r in records}
    assert set(by_role) == {"client", "server"} and len(records) == 2
    assert (by_role["client"].remote_ip, by_role["client"].remote_port) == ("10.1.0.11", 7070)
    assert (by_role["server"].local_port, by_role["server"].remote_ip) == (8080, "10.1.0.12")
    assert all(r.netns == (tmp_path / "4242" / "net" / "tcp").stat().st_ino for r in records)
    assert all(r.pod_uid == "6d0c1f7e-2b1c-4f9e-9a43-3f9b3e1b8a11" for r in records)
