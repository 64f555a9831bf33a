"""Where a test run's time went: ``python tests/helpers/timeline.py FILE``.

FILE is what ``CALLMAP_TEST_TIMELINE=FILE make test`` wrote (tests/conftest.py):
a line a test, ``[process, scope, test id, start, seconds]``. Printed: how
long each process was busy and when its last test ended, the seconds of each
scope and of the longest tests. A run is as long as its busiest process.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def report(lines: list[str], longest: int = 15) -> str:
    rows = [json.loads(line) for line in lines if line.strip()]
    if not rows:
        return "no tests in the timeline"
    began = min(row[3] for row in rows)
    busy: Counter[str] = Counter()
    scopes: Counter[str] = Counter()
    ended: dict[str, float] = {}
    for process, scope, _, start, seconds in rows:
        busy[process] += seconds
        scopes[scope] += seconds
        ended[process] = max(ended.get(process, 0.0), start + seconds - began)
    out = [f"{len(rows)} tests, {sum(busy.values()):,.0f} s of work"]
    for process in sorted(busy):
        out.append(f"{process}: busy {busy[process]:,.0f} s, last ended at {ended[process]:,.0f} s")
    out.append("scopes:")
    out += [f"{seconds:8,.0f} s  {scope}" for scope, seconds in scopes.most_common()]
    out.append("longest tests:")
    slowest = sorted(rows, key=lambda row: -row[4])[:longest]
    out += [f"{row[4]:8,.0f} s  {row[0]}  {row[2]}" for row in slowest]
    return "\n".join(out)


if __name__ == "__main__":
    print(report(Path(sys.argv[1]).read_text().splitlines()))
