"""A lab's life: held calls, churn, and `down` removing everything, even after a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.labfixtures import lab_leftovers, skip_without_root, unique_name, write_topology

from callmap.inventory import load_inventory
from lab.churn import run_churn
from lab.processes import lab_namespaces
from lab.runtime import call_report, release, up
from lab.state import load_state
from lab.teardown import down
from lab.topologyrecords import object_prefix

pytestmark = pytest.mark.netns

CHURN = """
workloads:
  - {namespace: shop, name: frontend}
  - {namespace: shop, name: cart, service: {name: cart, ports: [7070]}}
  - {namespace: shop, name: email, service: {name: email, ports: [5000]}, ports: [7070]}
  - {namespace: data, name: db, kind: StatefulSet, service: {name: db, ports: [5432]}}
calls:
  - {from: shop/frontend, to: db.data, port: 5432, long_lived: true, before_capture: true}
  - {from: shop/frontend, to: 10.244.0.4, port: 7070, rate: 4}
  - {from: shop/frontend, to: email, port: 5000, rate: 4}
churn:
  - {at: 1, delete: shop/cart, ip_to: shop/email}
"""

SMALL = """
workloads:
  - {namespace: a, name: client}
  - {namespace: a, name: server, service: {name: server, ports: [80]}}
calls:
  - {from: a/client, to: server, port: 80}
"""


@pytest.fixture
def lab_files(tmp_path: Path) -> tuple[str, Path, Path]:
    skip_without_root()
    name = unique_name("itlife")
    return name, write_topology(tmp_path, name, CHURN), tmp_path / "state"


def _calls(state_dir: Path) -> dict[str, dict[str, object]]:
    reports = call_report(load_state(state_dir))
    return {str(c["to"]): c for r in reports for c in r["calls"]}


def _wait(condition, seconds: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_held_calls_wait_for_go_and_churn_hands_the_address_to_the_new_pod(lab_files) -> None:  # type: ignore[no-untyped-def]
    name, topology, state_dir = lab_files
    try:
        state = up(topology, state_dir, hold=True)
        calls = _calls(state_dir)
        assert calls["db.data"]["open"] and calls["db.data"]["ok"] >= 1  # opened before capture
        assert calls["email"]["ok"] == 0 and calls["10.244.0.4"]["ok"] == 0  # held
        assert state.released is None

        release(state_dir)
        _wait(lambda: _calls(state_dir)["email"]["ok"] >= 1)
        assert str(_calls(state_dir)["10.244.0.4"]["last_peer"]) == "10.244.0.4"

        final = run_churn(state_dir)
        assert final.churn_done == 1
        inventory = load_inventory(Path(final.inventory).read_text())  # as the watcher reads it
        holders = [p for p in inventory.pods if p.ips == ["10.244.0.4"]]
        assert [(p.workload and p.workload.name, p.deleted is None) for p in holders] == [
            ("cart", False),
            ("email", True),
        ]
        new_pod = next(
            p for p in final.live_pods() if p.workload == "shop/email" and p.ips == ["10.244.0.4"]
        )
        assert os.path.exists(f"/var/run/netns/{new_pod.netns}")
        before = int(_calls(state_dir)["10.244.0.4"]["ok"])  # type: ignore[call-overload]
        _wait(lambda: int(_calls(state_dir)["10.244.0.4"]["ok"]) > before + 2)  # type: ignore[call-overload]
        status = Path(new_pod.status or "").read_text()
        assert '"listening": true' in status
    finally:
        report = down(name, state_dir)
    assert lab_leftovers(object_prefix(name), state_dir) == []
    assert not report.left


def test_down_removes_everything_and_is_idempotent(tmp_path: Path) -> None:
    skip_without_root()
    name = unique_name("itdown")
    state_dir = tmp_path / "state"
    state = up(write_topology(tmp_path, name, SMALL), state_dir)
    pids = [p.pid for p in state.processes]
    first = down(name, state_dir)
    assert sorted(first.stopped) == sorted(pids)
    assert lab_leftovers(object_prefix(name), state_dir) == []
    assert not any(
        os.path.exists(f"/proc/{pid}/cmdline")
        and b"lab.caller" in Path(f"/proc/{pid}/cmdline").read_bytes()
        for pid in pids
    )
    second = down(name, state_dir)
    assert (second.stopped, second.namespaces, second.left) == ([], [], [])


def test_down_after_losing_the_state_file_finds_everything_by_prefix(tmp_path: Path) -> None:
    skip_without_root()
    name = unique_name("itlost")
    state_dir = tmp_path / "state"
    up(write_topology(tmp_path, name, SMALL), state_dir)
    (state_dir / "lab.json").unlink()
    report = down(name, state_dir)
    assert len(report.stopped) == 4  # dnsmasq, the internet, two callers: found in /proc
    assert lab_leftovers(object_prefix(name), state_dir) == []


def test_down_after_lab_up_is_killed_mid_build(tmp_path: Path) -> None:
    skip_without_root()
    name = unique_name("itcrash")
    state_dir = tmp_path / "state"
    topology = write_topology(tmp_path, name, CHURN)
    prefix = object_prefix(name)
    up_process = subprocess.Popen(
        [sys.executable, "-m", "lab", "up", str(topology), "--state-dir", str(state_dir)],
        cwd=Path(__file__).parents[3],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: len(lab_namespaces(prefix)) >= 2, seconds=20)
    finally:
        up_process.send_signal(signal.SIGKILL)
        up_process.wait()
    assert lab_namespaces(prefix)  # the crash left something behind
    report = down(name, state_dir)
    assert report.namespaces
    assert lab_leftovers(prefix, state_dir) == []


def test_a_second_up_of_the_same_lab_is_refused_until_down(tmp_path: Path) -> None:
    skip_without_root()
    name = unique_name("ittwice")
    state_dir = tmp_path / "state"
    topology = write_topology(tmp_path, name, SMALL)
    up(topology, state_dir)
    try:
        from lab.errors import LabError

        with pytest.raises(LabError, match="already up"):
            up(topology, tmp_path / "other")
    finally:
        down(name, state_dir)
    assert lab_leftovers(object_prefix(name), state_dir) == []
