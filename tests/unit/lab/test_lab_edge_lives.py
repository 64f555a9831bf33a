"""Edges expire once their calls stop, a TTL later, and not before."""

from __future__ import annotations

from lab.lifecycle import LOG_GAP, SLACK, STOPPED_AFTER, check_lifecycle, expiry_due
from lab.truth import ExpectedEdge

TTL = 30.0
GOING = ExpectedEdge("shop/frontend", "shop/cart")
STOPPED = ExpectedEdge("ops/prober", "shop/cartservice")


def test_a_pair_whose_calls_stopped_must_expire_a_ttl_later() -> None:
    now = 120.0
    last = {GOING: now - 1, STOPPED: 100.0}
    assert expiry_due(last, now, TTL) == 100.0 + LOG_GAP + TTL + SLACK > now  # wait for it
    then = 100.0 + LOG_GAP + TTL + SLACK + 1
    late = check_lifecycle(last, {}, now=then, ttl=TTL)
    assert late.late == (STOPPED,) and not late.right
    right = check_lifecycle(last, {STOPPED: 100.0 + TTL + 3}, now=then, ttl=TTL)
    assert right.right and right.expired == (STOPPED,)


def test_a_pair_still_called_must_not_expire() -> None:
    early = check_lifecycle({GOING: 195.0}, {GOING: 196.0}, now=200.0, ttl=TTL)
    assert early.early == (GOING,) and not early.right


def test_nothing_is_due_while_every_pair_is_still_called() -> None:
    now = 200.0
    assert expiry_due({GOING: now - STOPPED_AFTER + 1}, now, TTL) == now
