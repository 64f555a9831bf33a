"""A namespace's own addresses, as /proc writes them."""

from __future__ import annotations

from pathlib import Path

from capture.localaddrs import parse_fib_trie, parse_if_inet6, read_local_addresses

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.77.0.0/24 2 0 2
        |-- 10.77.0.0
           /24 link UNICAST
        |-- 10.77.0.1
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 10.77.0.1
        /32 host LOCAL
     |-- 10.77.0.255
        /32 link BROADCAST
     |-- 127.0.0.1
        /32 host LOCAL
     |-- 169.254.20.10
        /32 host LOCAL
     |-- not-an-address
        /32 host LOCAL
"""

IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fd770000000000000000000000000001 03 40 00 80 cm1srv1
fe80000000000000b8a6f0fffe1c0001 03 40 20 80 cm1srv1
garbage
"""


def test_local_ipv4_addresses_are_the_host_local_leaves_without_loopback() -> None:
    assert parse_fib_trie(FIB_TRIE) == {"10.77.0.1", "169.254.20.10"}


def test_ipv6_addresses_are_every_line_but_loopback() -> None:
    assert parse_if_inet6(IF_INET6) == {"fd77::1", "fe80::b8a6:f0ff:fe1c:1"}


def test_the_files_are_read_together_and_a_missing_one_is_no_error(tmp_path: Path) -> None:
    (tmp_path / "fib_trie").write_text(FIB_TRIE)
    assert read_local_addresses(proc_net=tmp_path) == {"10.77.0.1", "169.254.20.10"}


def test_this_namespace_has_its_loopback_only_left_out() -> None:
    addresses = read_local_addresses()
    assert "127.0.0.1" not in addresses and "::1" not in addresses
