"""Handing a list's items on one at a time."""

from __future__ import annotations

from callmap.lists import drained


def test_records_are_taken_in_order_and_the_list_is_emptied_as_they_go() -> None:
    records = ["first", "second", "third"]
    taken = drained(records)
    assert next(taken) == "first"
    assert records == ["third", "second"]  # the first is no longer held by the list
    assert list(taken) == ["second", "third"]
    assert records == []
