"""Specification of the /proc walker, against fake proc trees in tmp_path."""

from __future__ import annotations

import ipaddress
import os
import shutil
from pathlib import Path

import pytest

import capture.procscan as procscan
from callmap.errors import ConfigError
from capture.procnet import SKIP_HEADER, TcpState
from capture.procscan import (
    NAMESPACES,
    NETNS_UNREADABLE,
    PID_DENIED,
    PID_ERROR,
    PID_MOVED,
    PID_VANISHED,
    PIDS,
    POD_AMBIGUOUS,
    TABLE_MISSING,
    TABLES_READ,
    PodsOfPids,
    scan_proc,
)
from capture.sockroles import DROP_LOOPBACK, DROP_NOT_ESTABLISHED, ROLE_CLIENT, ROLE_SERVER

UID = "0f5f3a57-3b4e-4a5c-9a43-1c2d3e4f5a6b"
UID_ = UID.replace("-", "_")
OTHER_UID = "a1b2c3d4-0000-4111-8222-933344445555"
CTR = "5c0ffee0" * 8  # a 64-hex container id

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"


# --- a fake proc tree -------------------------------------------------------------------


def hex_address(ip: str) -> str:
    packed = ipaddress.ip_address(ip).packed
    return "".join(packed[i : i + 4][::-1].hex().upper() for i in range(0, len(packed), 4))


def line(local: str, remote: str, state: TcpState, inode: int = 1) -> str:
    """A table line from "ip:port" / "[ip6]:port" endpoints."""

    def endpoint(text: str) -> str:
        ip, _, port = text.rpartition(":")
        return f"{hex_address(ip.strip('[]'))}:{int(port):04X}"

    return (
        f"   0: {endpoint(local)} {endpoint(remote)} {state:02X} 00000000:00000000 "
        f"00:00000000 00000000     0        0 {inode} 1 0000000000000000 100 0 0 10 0\n"
    )


def namespace(
    proc: Path, name: str, *, tcp: list[str] | None = None, tcp6: list[str] | None = None
) -> None:
    """A network namespace's tables, kept beside the pids (under a name that is no pid)."""
    tables = proc / ".namespaces" / name
    tables.mkdir(parents=True, exist_ok=True)
    for table, lines in (("tcp", tcp), ("tcp6", tcp6)):
        if lines is not None:
            (tables / table).write_text(HEADER + "".join(lines))


def ns_id(proc: Path, name: str) -> int:
    """The id a scan gives namespace ``name``: the inode its pids' ``net/tcp`` share."""
    return (proc / ".namespaces" / name / "tcp").stat().st_ino


def add_pid(
    proc: Path,
    pid: int,
    netns: str,
    *,
    tcp: list[str] | None = None,
    tcp6: list[str] | None = None,
    cgroup: str = "0::/system.slice/containerd.service\n",
) -> Path:
    """One /proc/<pid> directory in namespace ``netns``: its ``net/tcp`` and ``net/tcp6``
    are hard links to the namespace's tables, so every pid in it shows the same file,
    one inode, as the kernel's do. ``tcp``/``tcp6`` set the tables when given."""
    namespace(proc, netns, tcp=tcp, tcp6=tcp6)
    base = proc / str(pid)
    (base / "net").mkdir(parents=True)
    (base / "cgroup").write_text(cgroup)
    for table in ("tcp", "tcp6"):
        shared = proc / ".namespaces" / netns / table
        if shared.exists():
            os.link(shared, base / "net" / table)
    return base


def pod_cgroup(uid: str) -> str:
    return (
        f"0::/kubepods.slice/kubepods-burstable.slice/"
        f"kubepods-burstable-pod{uid.replace('-', '_')}.slice/cri-containerd-{CTR}.scope\n"
    )


L, E, TW = TcpState.LISTEN, TcpState.ESTABLISHED, TcpState.TIME_WAIT
POD_NS, OTHER_POD_NS, HOST_NS = "pod", "other-pod", "host"


def test_a_pod_namespace_is_read_once_through_its_lowest_pid(tmp_path: Path) -> None:
    tables = {
        "tcp": [
            line("0.0.0.0:8080", "0.0.0.0:0", L),
            line("10.0.0.5:8080", "10.0.0.9:41000", E, inode=11),
            line("10.0.0.5:39000", "10.0.0.7:5432", E, inode=12),
        ],
        "tcp6": [line("[::]:9090", "[::]:0", L), line("[fd00::5]:9090", "[fd00::9]:42000", E)],
    }
    add_pid(tmp_path, 200, POD_NS, **tables, cgroup=pod_cgroup(UID))
    add_pid(tmp_path, 310, POD_NS, cgroup=pod_cgroup(UID))
    add_pid(tmp_path, 45, POD_NS, cgroup=pod_cgroup(UID))
    for table in ("tcp", "tcp6"):  # pid 45 is exiting: its tables are gone
        (tmp_path / "45" / "net" / table).unlink()

    result = scan_proc(str(tmp_path))

    (ns,) = result.namespaces
    assert (ns.netns, ns.pod_uid, ns.pids) == (ns_id(tmp_path, POD_NS), UID, (200, 310))
    assert ns.pid == 200
    assert [(c.local_port, c.remote_ip, c.remote_port, c.role) for c in ns.connections] == [
        (8080, "10.0.0.9", 41000, ROLE_SERVER),
        (39000, "10.0.0.7", 5432, ROLE_CLIENT),
        (9090, "fd00::9", 42000, ROLE_SERVER),
    ]
    assert ns.listeners == {("0.0.0.0", 8080), ("::", 9090)}
    assert ns.sockets == 5
    assert result.counters[TABLES_READ] == 2  # once for the namespace, not per pid
    assert result.counters[PID_VANISHED] == 1


def test_namespaces_come_out_in_id_order_with_their_own_tables(tmp_path: Path) -> None:
    add_pid(tmp_path, 1, HOST_NS, tcp=[line("0.0.0.0:22", "0.0.0.0:0", L)], tcp6=[])
    add_pid(tmp_path, 900, OTHER_POD_NS, tcp=[], tcp6=[], cgroup=pod_cgroup(OTHER_UID))
    add_pid(
        tmp_path,
        500,
        POD_NS,
        tcp=[line("10.0.0.5:40000", "10.96.0.10:53", E)],
        tcp6=[],
        cgroup=pod_cgroup(UID),
    )

    result = scan_proc(str(tmp_path))

    expected = sorted(
        [
            (ns_id(tmp_path, HOST_NS), 1, None, 0),
            (ns_id(tmp_path, POD_NS), 500, UID, 1),
            (ns_id(tmp_path, OTHER_POD_NS), 900, OTHER_UID, 0),
        ]
    )
    found = [(ns.netns, ns.pid, ns.pod_uid, len(ns.connections)) for ns in result.namespaces]
    assert found == expected
    assert result.counters == {PIDS: 3, TABLES_READ: 6, NAMESPACES: 3}


def test_the_host_namespace_with_hostnetwork_pods_gets_no_pod(tmp_path: Path) -> None:
    add_pid(tmp_path, 1, HOST_NS, tcp=[], tcp6=[], cgroup="0::/init.scope\n")
    add_pid(tmp_path, 700, HOST_NS, cgroup=pod_cgroup(UID))  # a hostNetwork pod

    result = scan_proc(str(tmp_path))

    assert result.namespaces[0].pids == (1, 700)
    assert result.namespaces[0].pod_uid is None
    assert result.counters[POD_AMBIGUOUS] == 1


def test_counters_say_why_connections_were_left_out(tmp_path: Path) -> None:
    add_pid(
        tmp_path,
        10,
        POD_NS,
        tcp=[
            "garbage line\n",
            line("0.0.0.0:80", "0.0.0.0:0", L),
            line("127.0.0.1:80", "127.0.0.1:40000", E),
            line("10.0.0.5:80", "10.0.0.6:40000", TW, inode=0),
            line("10.0.0.5:80", "10.0.0.6:40001", E),
        ],
        tcp6=[],
    )

    (ns,) = scan_proc(str(tmp_path)).namespaces

    assert len(ns.connections) == 1
    assert ns.sockets == 4
    assert ns.skipped == {
        SKIP_HEADER: 2,
        "short_line": 1,
        DROP_LOOPBACK: 1,
        DROP_NOT_ESTABLISHED: 2,  # the listener and the TIME_WAIT
    }


def test_loopback_can_be_kept(tmp_path: Path) -> None:
    add_pid(tmp_path, 10, POD_NS, tcp=[line("127.0.0.1:80", "127.0.0.1:40000", E)], tcp6=[])

    (ns,) = scan_proc(str(tmp_path), include_loopback=True).namespaces

    assert [c.remote_port for c in ns.connections] == [40000]


def test_a_namespace_without_tcp6_is_read_from_tcp_alone(tmp_path: Path) -> None:
    add_pid(tmp_path, 10, POD_NS, tcp=[line("10.0.0.5:4000", "10.0.0.6:80", E)])

    result = scan_proc(str(tmp_path))

    (ns,) = result.namespaces
    assert len(ns.connections) == 1
    assert ns.skipped[TABLE_MISSING] == 1
    assert result.counters[TABLE_MISSING] == 1
    assert result.counters[TABLES_READ] == 1


def test_pids_that_vanished_before_they_were_grouped_are_counted(tmp_path: Path) -> None:
    add_pid(tmp_path, 10, POD_NS, tcp=[], tcp6=[])
    (tmp_path / "11").mkdir()  # listed, then gone: no net/tcp, no cgroup
    (tmp_path / "12" / "net").mkdir(parents=True)

    result = scan_proc(str(tmp_path))

    assert result.counters[PIDS] == 3
    assert result.counters[PID_VANISHED] == 2
    assert result.counters[NAMESPACES] == 1


def test_a_namespace_none_of_whose_pids_can_be_read_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_pid(tmp_path, 10, POD_NS, tcp=[], tcp6=[])
    add_pid(tmp_path, 11, POD_NS)
    add_pid(tmp_path, 20, OTHER_POD_NS, tcp=[], tcp6=[])
    fail_on(monkeypatch, ("/10/net/tcp", "/11/net/tcp"), ProcessLookupError(3, "No such process"))

    result = scan_proc(str(tmp_path))

    assert [ns.netns for ns in result.namespaces] == [ns_id(tmp_path, OTHER_POD_NS)]
    assert result.counters[NETNS_UNREADABLE] == 1
    assert result.counters[PID_VANISHED] == 2


def test_entries_that_are_not_pids_are_ignored(tmp_path: Path) -> None:
    add_pid(tmp_path, 10, POD_NS, tcp=[], tcp6=[])
    for name in ("self", "thread-self", "sys", "net", "12a", "٣"):
        (tmp_path / name).mkdir()
    (tmp_path / "uptime").write_text("1.0 1.0\n")

    result = scan_proc(str(tmp_path))

    assert result.counters[PIDS] == 1


def fail_on(monkeypatch: pytest.MonkeyPatch, suffixes: str | tuple[str, ...], exc: OSError) -> None:
    """Make procscan's reads of paths ending in one of ``suffixes`` raise ``exc``."""
    real_read = procscan._read

    def read(path: str) -> bytes:
        if path.endswith(suffixes):
            raise exc
        return real_read(path)

    monkeypatch.setattr(procscan, "_read", read)


@pytest.mark.parametrize(
    ("exc", "counter"),
    [
        (PermissionError(13, "Permission denied"), PID_DENIED),
        (ProcessLookupError(3, "No such process"), PID_VANISHED),
        (FileNotFoundError(2, "No such file or directory"), PID_VANISHED),
        (OSError(22, "Invalid argument"), PID_ERROR),
    ],
)
def test_one_unreadable_pid_is_skipped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: OSError, counter: str
) -> None:
    add_pid(tmp_path, 10, POD_NS, tcp=[line("10.0.0.5:4000", "10.0.0.6:80", E)], tcp6=[])
    add_pid(tmp_path, 11, POD_NS, tcp=[line("10.0.0.5:4000", "10.0.0.6:80", E)], tcp6=[])
    fail_on(monkeypatch, "/10/net/tcp", exc)

    result = scan_proc(str(tmp_path))

    (ns,) = result.namespaces
    assert (ns.pid, len(ns.connections)) == (11, 1)
    assert result.counters[counter] == 1


def test_a_denied_cgroup_keeps_the_pid_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add_pid(tmp_path, 10, POD_NS, tcp=[], tcp6=[], cgroup=pod_cgroup(UID))
    add_pid(tmp_path, 11, POD_NS, tcp=[], tcp6=[], cgroup=pod_cgroup(UID))
    fail_on(monkeypatch, "/10/cgroup", PermissionError(13, "Permission denied"))

    result = scan_proc(str(tmp_path))

    (ns,) = result.namespaces
    assert (ns.pids, ns.pod_uid) == ((11,), UID)
    assert result.counters[PID_DENIED] == 1


def test_a_pid_that_changes_namespace_while_read_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = add_pid(tmp_path, 10, POD_NS, tcp=[line("10.9.9.9:1", "10.9.9.8:2", E)], tcp6=[])
    add_pid(tmp_path, 11, POD_NS)
    namespace(tmp_path, HOST_NS, tcp=[line("10.0.0.5:4000", "10.0.0.6:80", E)], tcp6=[])
    real_read = procscan._read

    def setns_while_read(path: str) -> bytes:
        if path.endswith("/10/net/tcp"):  # pid 10 moves to the host's namespace meanwhile
            for table in ("tcp", "tcp6"):
                (first / "net" / table).unlink()
                os.link(tmp_path / ".namespaces" / HOST_NS / table, first / "net" / table)
        return real_read(path)

    monkeypatch.setattr(procscan, "_read", setns_while_read)

    result = scan_proc(str(tmp_path))

    (ns,) = result.namespaces
    assert (ns.netns, ns.pid) == (ns_id(tmp_path, POD_NS), 11)
    assert [(c.remote_ip, c.remote_port) for c in ns.connections] == [("10.9.9.8", 2)]
    assert result.counters[PID_MOVED] == 1


def test_a_missing_proc_root_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot list proc root"):
        scan_proc(str(tmp_path / "nope"))


def test_a_trailing_slash_on_the_root_is_fine(tmp_path: Path) -> None:
    add_pid(tmp_path, 10, POD_NS, tcp=[], tcp6=[])

    assert scan_proc(f"{tmp_path}{os.sep}").counters[NAMESPACES] == 1


# --- the pids' pods, kept from one scan to the next --------------------------------


def cgroup_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ``cgroup`` files procscan reads from now on, in order."""
    reads: list[str] = []
    real_read = procscan._read

    def read(path: str) -> bytes:
        if path.endswith("/cgroup"):
            reads.append(path.rsplit("/", 2)[-2])
        return real_read(path)

    monkeypatch.setattr(procscan, "_read", read)
    return reads


def pod_of_each_scan(proc: Path, pods: PodsOfPids) -> list[tuple[str | None, tuple[int, ...]]]:
    return [(ns.pod_uid, ns.pids) for ns in scan_proc(str(proc), pods=pods).namespaces]


def test_a_known_process_is_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add_pid(tmp_path, 10, POD_NS, tcp=[], tcp6=[], cgroup=pod_cgroup(UID))
    add_pid(tmp_path, 11, POD_NS, cgroup=pod_cgroup(UID))
    reads, pods = cgroup_reads(monkeypatch), PodsOfPids()

    assert pod_of_each_scan(tmp_path, pods) == [(UID, (10, 11))]
    add_pid(tmp_path, 12, POD_NS, cgroup=pod_cgroup(UID))
    assert pod_of_each_scan(tmp_path, pods) == [(UID, (10, 11, 12))]

    assert reads == ["10", "11", "12"]  # the new process only, the second time


def test_a_pid_taken_by_another_process_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_pid(tmp_path, 10, POD_NS, tcp=[], tcp6=[], cgroup=pod_cgroup(UID))
    add_pid(tmp_path, 11, POD_NS, cgroup=pod_cgroup(UID))
    reads, pods = cgroup_reads(monkeypatch), PodsOfPids()
    assert pod_of_each_scan(tmp_path, pods) == [(UID, (10, 11))]

    # Pid 11 ends, and another pod's process entering the namespace gets its number:
    # a new directory, with a new inode (made before the old one goes, so that the
    # file system cannot hand the old one back).
    new = tmp_path / ".next" / "11"
    (new / "net").mkdir(parents=True)
    (new / "cgroup").write_text(pod_cgroup(OTHER_UID))
    for table in ("tcp", "tcp6"):
        os.link(tmp_path / ".namespaces" / POD_NS / table, new / "net" / table)
    shutil.rmtree(tmp_path / "11")
    new.rename(tmp_path / "11")

    assert pod_of_each_scan(tmp_path, pods) == [(None, (10, 11))]  # the pids disagree now
    assert reads == ["10", "11", "11"]


def test_a_process_that_entered_another_namespace_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_pid(tmp_path, 10, POD_NS, tcp=[], tcp6=[], cgroup=pod_cgroup(UID))
    add_pid(tmp_path, 20, OTHER_POD_NS, tcp=[], tcp6=[], cgroup=pod_cgroup(OTHER_UID))
    reads, pods = cgroup_reads(monkeypatch), PodsOfPids()
    assert sorted(pod_of_each_scan(tmp_path, pods)) == [(UID, (10,)), (OTHER_UID, (20,))]

    for table in ("tcp", "tcp6"):  # pid 20 setns()'d into pid 10's namespace
        (tmp_path / "20" / "net" / table).unlink()
        os.link(tmp_path / ".namespaces" / POD_NS / table, tmp_path / "20" / "net" / table)

    assert pod_of_each_scan(tmp_path, pods) == [(None, (10, 20))]  # read again: another pod
    assert reads == ["10", "20", "20"]


def test_processes_that_ended_are_forgotten(tmp_path: Path) -> None:
    for pid in (10, 11, 12):
        add_pid(tmp_path, pid, POD_NS, tcp=[], tcp6=[], cgroup=pod_cgroup(UID))
    pods = PodsOfPids()
    scan_proc(str(tmp_path), pods=pods)
    shutil.rmtree(tmp_path / "11")
    shutil.rmtree(tmp_path / "12")

    assert pod_of_each_scan(tmp_path, pods) == [(UID, (10,))]
    assert len(pods) == 1
