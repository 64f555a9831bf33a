"""Equal values as one object, so that 100,000 pods do not hold 100,000 copies.

Pods of one ReplicaSet carry the same owner reference, usually the same label
subset and the same workload; :class:`Shared` hands out the first of equal
values for all of them, as ``sys.intern`` does for strings.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class Shared(Generic[K, T]):
    """Equal values as one object: a bounded table from a key to its first value.

    Only for values nobody mutates (frozen structs, the labels dicts of frozen
    records). Past ``limit`` entries the table starts over: values already
    shared stay shared, so memory stays bounded whatever the churn.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._values: dict[K, T] = {}
        self._limit = limit

    def get(self, key: K, make: Callable[[], T]) -> T:
        value = self._values.get(key)
        if value is None:
            if len(self._values) >= self._limit:
                self._values.clear()
            value = self._values[key] = make()
        return value
