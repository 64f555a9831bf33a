"""The collector set for a long-running service: set-up frozen, young objects collected
less often, garbage made afterwards still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from callmap.heap import YOUNG_THRESHOLD, settle


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    """A garbage cycle of two nodes; a weak reference to one of them."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    gc.disable()  # no collection of its own between the test's steps
    yield
    gc.enable()
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_what_exists_at_settling_is_left_out_and_later_garbage_is_still_collected() -> None:
    before = cycle()  # garbage made during set-up: frozen with the rest
    settle()
    after = cycle()
    gc.collect()
    assert before() is not None, "frozen objects are never collected"
    assert after() is None, "garbage made after settling is collected"
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
