"""The DNS memory: which external name each client was given for an address, and when."""

from __future__ import annotations

from helpers.streamrecords import answer

from streams.dnsmemory import DnsMemory

GITHUB = "api.github.com"
ADDRESS = "203.0.113.20"


def asked_every_second(memory: DnsMemory, first: int, last: int, ttl: int = 30) -> None:
    """The client ``a`` asks for GITHUB once a second from ``first`` to ``last``."""
    for second in range(first, last + 1):
        memory.remember("a", answer(GITHUB, "10.1.0.10", ADDRESS, ts=second, ttl=ttl), GITHUB)


def test_a_connection_read_after_later_answers_of_its_name_is_still_named() -> None:
    # A worker catching up a backlog, or retrying a connection after the grace
    # period, has read a minute of answers given after the connection.
    memory = DnsMemory(slack=30)
    asked_every_second(memory, 100, 160)
    assert memory.name(("a",), ADDRESS, 100.5) == GITHUB
    assert memory.name(("a",), ADDRESS, 160 + 30 + 30) == GITHUB  # the last answer's TTL and slack
    assert memory.name(("a",), ADDRESS, 160 + 30 + 31) is None
    assert memory.name(("a",), ADDRESS, 100 - 30) == GITHUB  # capture clocks: the slack before
    assert memory.name(("a",), ADDRESS, 100 - 31) is None
    assert len(memory) == 1  # one run of validity, however many answers


def test_a_name_asked_again_after_it_expired_leaves_the_gap_unnamed() -> None:
    memory = DnsMemory(slack=5)
    asked_every_second(memory, 300, 310, ttl=10)  # read first, as a backlog may be
    asked_every_second(memory, 100, 110, ttl=10)
    assert memory.name(("a",), ADDRESS, 105) == GITHUB
    assert memory.name(("a",), ADDRESS, 200) is None
    assert memory.name(("a",), ADDRESS, 305) == GITHUB
    assert len(memory) == 2


def test_another_client_was_not_told_the_name() -> None:
    memory = DnsMemory()
    asked_every_second(memory, 100, 110)
    assert memory.name(("b", "10.1.0.11"), ADDRESS, 105) is None
    assert memory.name(("b", "a"), ADDRESS, 105) == GITHUB  # the first client key known


def test_of_two_names_valid_at_once_the_one_answered_last_before_the_connection_wins() -> None:
    memory = DnsMemory()
    memory.remember("a", answer("img.example.com", "10.1.0.10", ADDRESS, ts=100), "img.example.com")
    memory.remember("a", answer(GITHUB, "10.1.0.10", ADDRESS, ts=110), GITHUB)
    memory.remember("a", answer("img.example.com", "10.1.0.10", ADDRESS, ts=120), "img.example.com")
    assert memory.name(("a",), ADDRESS, 115) == GITHUB
    assert memory.ambiguous == 1
    assert memory.name(("a",), ADDRESS, 125) == "img.example.com"
    assert memory.ambiguous == 2


def test_the_dns_memory_forgets_old_answers_in_passes_not_on_every_answer() -> None:
    memory = DnsMemory(retention=100.0)
    for second in range(10_000):
        answer_at = answer(GITHUB, "10.1.0.10", f"203.0.113.{second % 200}", ts=second)
        memory.remember(f"client-{second % 50}", answer_at, GITHUB)
    assert memory.sweeps <= 10_000 // 25 + 1  # before: one pass per answer after the first 100 s
    assert len(memory) <= 125  # at most 1.25 retentions of one answer a second


def test_a_name_asked_without_a_gap_for_longer_than_the_retention_is_kept() -> None:
    memory = DnsMemory(retention=100.0)
    asked_every_second(memory, 0, 1000)
    assert memory.name(("a",), ADDRESS, 1000) == GITHUB
