"""Retries wait longer after each failure, up to a cap, and start over after a success."""

from __future__ import annotations

import pytest

from callmap.backoff import Backoff, give_up_after, retrying
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


async def test_a_start_budget_retries_until_it_is_spent_then_raises_the_fault() -> None:
    now = [0.0]

    async def sleep(pause: float) -> None:
        now[0] += pause

    async def unreachable() -> None:
        raise TemporaryError(f"broker away at {now[0]:g}s")

    with pytest.raises(TemporaryError, match=r"away at 15\.5s"):
        await retrying(
            unreachable,
            "create topics",
            Backoff(first=0.5, most=4.0),
            sleep=sleep,
            on_retry=give_up_after(15.0, lambda: now[0]),
        )


async def test_a_start_budget_gives_up_at_once_when_a_stop_is_requested() -> None:
    attempts = 0

    async def unreachable() -> None:
        nonlocal attempts
        attempts += 1
        raise TemporaryError("broker away")

    with pytest.raises(TemporaryError):
        await retrying(
            unreachable, "create topics", on_retry=give_up_after(60.0, or_when=lambda: True)
        )
    assert attempts == 1
