"""The collector set for a long-running service: set-up frozen, young objects collected
less often, garbage made afterwards still collected."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
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


LARGE_BLOCKS = """
import ctypes, sys
from callmap.heap import release_large_blocks

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "released":
    assert release_large_blocks()
first = bytearray(900_000)  # a mapped block; freeing it raises glibc's threshold
del first
second = bytearray(900_000)
print(libc.mallinfo2().hblkhd >= 900_000)  # bytes in blocks mapped on their own
"""


@pytest.mark.parametrize(("setting", "mapped"), [("released", "True"), ("glibc's own", "False")])
def test_a_large_block_made_after_one_was_freed_is_mapped_on_its_own(
    setting: str, mapped: str
) -> None:
    """So that its memory goes back to the kernel when it is freed in turn."""
    shown = subprocess.run(
        [sys.executable, "-c", LARGE_BLOCKS, setting],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert shown.stdout.strip() == mapped
