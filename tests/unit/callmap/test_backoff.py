"""Retries wait longer after each failure, up to a cap, and start over after a success."""

from __future__ import annotations

import pytest

from callmap.backoff import Backoff, retrying
from callmap.errors import PermanentError, TemporaryError


def test_pauses_double_up_to_the_cap_and_a_success_starts_over() -> None:
    backoff = Backoff(first=0.5, most=3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_a_backoff_that_cannot_wait_is_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(first=0.0)
    with pytest.raises(ValueError):
        Backoff(first=5.0, most=1.0)


async def test_retrying_waits_after_each_temporary_fault_and_returns_the_result() -> None:
    outcomes: list[object] = [TemporaryError("away"), TemporaryError("still away"), "done"]
    slept: list[float] = []
    seen: list[str] = []

    async def step() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        assert isinstance(outcome, str)
        return outcome

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    result = await retrying(
        step, "connect", Backoff(1.0, 10.0), sleep=sleep, on_retry=lambda e: seen.append(str(e))
    )
    assert (result, slept, seen) == ("done", [1.0, 2.0], ["away", "still away"])


async def test_retrying_gives_up_on_anything_but_a_temporary_fault() -> None:
    async def step() -> None:
        raise PermanentError("forbidden")

    async def sleep(seconds: float) -> None:
        raise AssertionError("no pause before a permanent fault")

    with pytest.raises(PermanentError):
        await retrying(step, "connect", sleep=sleep)


async def test_on_retry_may_stop_the_loop_by_raising() -> None:
    async def step() -> None:
        raise TemporaryError("away")

    def stopping(exc: TemporaryError) -> None:
        raise exc

    with pytest.raises(TemporaryError):
        await retrying(step, "flush", on_retry=stopping)
