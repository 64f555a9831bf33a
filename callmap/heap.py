"""The garbage collector and the C allocator set for a long-running service.

CPython's cyclic collector walks every tracked object of a generation when it
collects it. A service's process holds a few hundred thousand objects from its
imports and set-up that never become garbage, and makes many short-lived
ones per event. :func:`settle` leaves the first out of every later collection
(``gc.freeze``) and collects the young generation every 50,000 allocations
instead of every 700, so that collecting costs in proportion to what a
service makes, not to what it imported. Garbage cycles are still collected,
a little later.

Measured with ``tests/bench/bench_streams.py`` (docs/streams.md): a stream
worker's CPU for 10,000 new edges fell by about a fifth. The capture agent
settles too: its DNS folder holds a window of answers (up to 100,000 objects
a second), and folding distinct answers took 5.8 µs an answer settled against
6.8 µs (docs/capture.md).

:func:`release_large_blocks` keeps glibc's malloc from holding on to the
memory of large blocks once they are freed (see there).
"""

from __future__ import annotations

import ctypes
import gc

YOUNG_THRESHOLD = 50_000
"""Allocations (less deallocations) between two collections of the youngest generation."""
MIDDLE_THRESHOLD = 20
OLD_THRESHOLD = 100


def settle() -> None:
    """Freeze what the process holds now and collect less often; call once set up."""
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)


M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter (malloc.h)."""
MMAP_THRESHOLD = 128 * 1024
"""Bytes from which a block gets a mapping of its own: glibc's starting value."""


def release_large_blocks() -> bool:
    """Have glibc's malloc give every block of :data:`MMAP_THRESHOLD` bytes or
    more a mapping of its own, unmapped when it is freed; False where the C
    library has no ``mallopt`` (not glibc).

    glibc starts so, but raises the threshold to the size of each mapped block
    freed (up to 32 MiB), so that later blocks of that size come from the heap,
    whose freed memory stays resident until the heap's top is free. A capture
    agent's flush makes a second's records into messages of up to 900 kB, held
    until Kafka has them: after the first flush they were heap blocks, and the
    agent's peak RSS at 100,000 DNS answers/s was 113-116 MB instead of
    101-102 MB (docs/capture.md). Setting the threshold turns the raising off;
    each such block then costs a mapping and its page faults: about 3 % of a
    core at that rate, 6-8 % when no answer folds."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
