"""Who may take the Lease: client-go's rules, judged on the candidate's own clock."""

from __future__ import annotations

from watch.lease import Election, LeaseRecord

HELD = LeaseRecord(holder="other", duration=15.0, transitions=3)


def test_a_lease_nobody_holds_may_be_taken_at_once() -> None:
    election = Election("me")
    assert election.may_take(now=0.0)
    election.observe(LeaseRecord(holder=None, duration=1.0), now=5.0)
    assert election.may_take(now=5.0)


def test_a_held_lease_may_be_taken_only_after_it_stayed_unchanged_for_its_duration() -> None:
    election = Election("me")
    election.observe(HELD, now=100.0)
    assert not election.may_take(now=114.9)
    election.observe(HELD, now=110.0)  # read again, unchanged: the clock keeps running
    assert election.may_take(now=115.0)


def test_a_renewal_restarts_the_clock() -> None:
    election = Election("me")
    election.observe(HELD, now=100.0)
    election.observe(LeaseRecord(holder="other", duration=15.0, transitions=3, renewed=None), 101)
    renewed = LeaseRecord(holder="other", duration=15.0, transitions=4)
    election.observe(renewed, now=110.0)
    assert not election.may_take(now=124.0) and election.may_take(now=125.0)


def test_the_holder_may_always_renew() -> None:
    election = Election("me")
    election.observe(LeaseRecord(holder="me", duration=15.0), now=0.0)
    assert election.holds() and election.may_take(now=1.0)
