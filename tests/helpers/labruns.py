"""`callmap lab run TOPOLOGY --json` as a user runs it, judged perfect or not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from callmap.config import Settings

TOPOLOGIES = Path(__file__).resolve().parents[2] / "lab" / "topologies"


def lab_run(settings: Settings, topology: str, *extra: str, timeout: float = 400) -> dict:  # type: ignore[type-arg]
    """A perfect `lab run`: one run, and an imperfect one fails with its report and logs."""
    run = _lab_run(settings, topology, *extra, timeout=timeout)
    assert _perfect(run), run.describe()
    return run.report


@dataclass
class _Run:
    report: dict  # type: ignore[type-arg]
    returncode: int
    stderr: str

    def describe(self) -> str:
        return f"{json.dumps(self.report)}\n{self.stderr[-4000:]}"


def _perfect(run: _Run) -> bool:
    """Perfect against both truths: the plan's by the rules, and the callers' logs."""
    report = run.report
    calls = report.get("calls", {})
    return (
        run.returncode == 0
        and report.get("missing") == []
        and report.get("unexpected") == []
        and (report.get("precision"), report.get("recall")) == (1.0, 1.0)
        and calls.get("missing") == []
        and calls.get("unexpected") == []
        and calls.get("logged", 0) > 0
        and report.get("new_again") == []
        and report.get("lifecycle", {}).get("expired_early") == []
        and report.get("lifecycle", {}).get("not_expired") == []
    )


def _lab_run(settings: Settings, topology: str, *extra: str, timeout: float) -> _Run:
    try:
        return _lab_run_once(settings, topology, *extra, timeout=timeout)
    finally:  # whatever happened, leave no lab of this run behind for the next test
        subprocess.run(
            [sys.executable, "-m", "callmap", "lab", "down", str(TOPOLOGIES / f"{topology}.yaml")],
            capture_output=True,
            timeout=120,
            check=False,
        )


def _lab_run_once(settings: Settings, topology: str, *extra: str, timeout: float) -> _Run:
    env = {
        **os.environ,
        "CALLMAP_KAFKA_BOOTSTRAP": settings.kafka.bootstrap_servers,
        "CALLMAP_TOPIC_PARTITIONS": "3",
        "CALLMAP_TOPIC_REPLICATION": "1",
        "CALLMAP_LOG_LEVEL": "WARNING",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "callmap",
            "lab",
            "run",
            str(TOPOLOGIES / f"{topology}.yaml"),
            "--json",
            "--seconds",
            "180",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    report = json.loads(result.stdout) if result.stdout.strip() else {}
    return _Run(report, result.returncode, result.stderr)
