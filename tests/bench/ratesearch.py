"""The live benches' search for the highest rate a receiver holds without loss.

Measure, do not target: the offered rate rises by a factor until the first
loss, or until the load itself falls short of what was asked (the receiver
then held everything the machine could offer); between the last lossless
rate and the first lossy one it is bisected down to a resolution.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar


class RateTrial(Protocol):
    @property
    def lossless(self) -> bool: ...


T = TypeVar("T", bound=RateTrial)


def search(
    trial: Callable[[int], T],
    *,
    first: int,
    rise: float,
    bisections: int,
    resolution: int,
    short: Callable[[T, int], bool],
) -> list[T]:
    """Every trial run, in order; ``short(trial, rate)``: the load fell short of ``rate``."""
    trials: list[T] = []
    rate, good, bad = first, 0, 0
    while True:
        one = trial(rate)
        trials.append(one)
        if not one.lossless:
            bad = rate
            break
        good = rate
        if short(one, rate):
            return trials  # the load's limit: the receiver held all it was offered
        rate = int(rate * rise)
    for _ in range(bisections):
        if bad - good < resolution:
            break
        rate = (good + bad) // 2
        one = trial(rate)
        trials.append(one)
        good, bad = (rate, bad) if one.lossless else (good, rate)
    return trials


def best(trials: list[T], rate: Callable[[T], float]) -> T | None:
    """The lossless trial of the highest ``rate``; None when none was lossless."""
    lossless = [t for t in trials if t.lossless]
    return max(lossless, key=rate) if lossless else None
