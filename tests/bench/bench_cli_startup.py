"""Benchmark: how long the ``callmap`` command takes to start, by what it is asked.

Baseline in the same run: ``python -c pass``, the interpreter alone. Each row is
the best of several runs, wall-clock and CPU (user + system of the child), so
a noisy shared machine shows its noise in the spread rather than in the result.
Goal: ``callmap --help`` under 0.2 s, since it imports no service.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table

REPEATS = 7
GOAL_SECONDS = 0.2

CASES: list[tuple[str, list[str]]] = [
    ("python -c pass (baseline)", ["-c", "pass"]),
    ("callmap --help", ["-m", "callmap", "--help"]),
    ("callmap capture --help", ["-m", "callmap", "capture", "--help"]),
    ("callmap capture dns --help", ["-m", "callmap", "capture", "dns", "--help"]),
    ("callmap watch --help", ["-m", "callmap", "watch", "--help"]),
    ("callmap streams --help", ["-m", "callmap", "streams", "--help"]),
    ("callmap sink --help", ["-m", "callmap", "sink", "--help"]),
]


def _run_once(args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of the interpreter with ``args``."""
    before = os.times()
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def main() -> None:
    table = Table(title=f"command start-up, best of {REPEATS} (worst wall in brackets)")
    for column in ("command", "wall s", "cpu s", "over baseline s", "goal"):
        table.add_column(column)
    baseline = None
    for label, args in CASES:
        runs = [_run_once(args) for _ in range(REPEATS)]
        wall = min(w for w, _ in runs)
        cpu = min(c for _, c in runs)
        worst = max(w for w, _ in runs)
        if baseline is None:
            baseline = wall
        goal = ""
        if label == "callmap --help":
            goal = f"< {GOAL_SECONDS} s {'✔' if wall < GOAL_SECONDS else '✘'}"
        table.add_row(
            label, f"{wall:.3f} ({worst:.3f})", f"{cpu:.3f}", f"{wall - baseline:+.3f}", goal
        )
    Console().print(table)


if __name__ == "__main__":
    main()
