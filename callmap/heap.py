"""The garbage collector set for a long-running service.

CPython's cyclic collector walks every tracked object of a generation when it
collects it. A service's process holds a few hundred thousand objects from its
imports and set-up that never become garbage, and makes many short-lived
ones per event. :func:`settle` leaves the first out of every later collection
(``gc.freeze``) and collects the young generation every 50,000 allocations
instead of every 700, so that collecting costs in proportion to what a
service makes, not to what it imported. Garbage cycles are still collected,
a little later.

Measured with ``tests/bench/bench_streams.py`` (docs/streams.md): a stream
worker's CPU for 10,000 new edges fell by about a fifth.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
"""Allocations (less deallocations) between two collections of the youngest generation."""
MIDDLE_THRESHOLD = 20
OLD_THRESHOLD = 100


def settle() -> None:
    """Freeze what the process holds now and collect less often; call once set up."""
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
