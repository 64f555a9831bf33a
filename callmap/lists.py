"""Handing a list's items on one at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")


def drained(items: list[T]) -> Iterator[T]:
    """``items`` in order, each let go of by the list as it is taken; the list is
    empty at the end. What is made from each item (a record, a message) then
    replaces it in memory instead of adding to the whole list: a capture flush's
    window, records and messages are never all alive at once."""
    items.reverse()
    while items:
        yield items.pop()
