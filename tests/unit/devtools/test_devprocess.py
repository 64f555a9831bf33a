"""PidFile against real short-lived processes: record, recognise, stop, and refuse strangers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.process import PidFile, alive

# Each child names the test's directory in its command line, as the dev servers
# name their instance's, so that a PidFile can tell it apart from any other.
SLEEPER = "import time; time.sleep(30)"
IGNORES_SIGTERM = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "open(sys.argv[1] + '/ready', 'w').close(); time.sleep(30)"
)
# Starts a sleeper in a session of its own, prints its pid and exits: the
# sleeper is then no child of ours, like a server an earlier `callmap` started.
ORPHANS_A_SLEEPER = (
    "import subprocess, sys; print(subprocess.Popen("
    f"[sys.executable, '-c', {SLEEPER!r}, sys.argv[1]], start_new_session=True, "
    "stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)"
)


def _marks(directory: Path) -> tuple[bytes, ...]:
    return (b"time.sleep(30)", str(directory).encode())


def _wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _wait_for_exec(pid: int, marks: tuple[bytes, ...]) -> None:
    """Until the child's command line reads as ours (for a few ms after Popen it is empty)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    _wait_until(lambda: all(mark in cmdline.read_bytes() for mark in marks))


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[int]]:
    """Pids a test started; any of them still running the test's command is killed at the end."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(OSError):
            if alive(pid) and str(tmp_path).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def test_a_spawned_process_is_recorded_recognised_and_stopped_with_sigterm(
    tmp_path: Path, started: list[int]
) -> None:
    pid_file = PidFile(tmp_path / "sleeper.pid", _marks(tmp_path))
    pid = pid_file.spawn([sys.executable, "-c", SLEEPER, str(tmp_path)], tmp_path / "sleeper.out")
    started.append(pid)
    assert pid_file.path.read_text() == str(pid)
    assert (tmp_path / "sleeper.out").exists()
    assert pid_file.recorded() == pid and alive(pid)  # recorded once it has exec'd

    began = time.monotonic()
    assert pid_file.stop(timeout=20.0) is True
    assert time.monotonic() - began < 10.0  # SIGTERM sufficed: no wait for the timeout
    assert not alive(pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # stop() reaped its own child: no zombie left
    assert not pid_file.path.exists()
    assert pid_file.recorded() is None
    assert pid_file.stop(timeout=1.0) is False


def test_a_pid_file_written_by_hand_is_recognised(tmp_path: Path, started: list[int]) -> None:
    """Instances already on disk: their pid files hold the bare pid, perhaps with a newline."""
    process = subprocess.Popen([sys.executable, "-c", SLEEPER, str(tmp_path)])
    started.append(process.pid)
    _wait_for_exec(process.pid, _marks(tmp_path))
    (tmp_path / "sleeper.pid").write_text(f"{process.pid}\n")
    pid_file = PidFile(tmp_path / "sleeper.pid", _marks(tmp_path))
    assert pid_file.recorded() == process.pid
    assert pid_file.stop(timeout=20.0) is True
    assert process.wait(timeout=10) in (-signal.SIGTERM, 0)  # 0: stop() reaped it first


def test_a_process_that_ignores_sigterm_is_killed_after_the_timeout(
    tmp_path: Path, started: list[int]
) -> None:
    marks = (b"signal.SIG_IGN", str(tmp_path).encode())
    pid_file = PidFile(tmp_path / "stubborn.pid", marks)
    command = [sys.executable, "-c", IGNORES_SIGTERM, str(tmp_path)]
    pid = pid_file.spawn(command, tmp_path / "stubborn.out")
    started.append(pid)
    _wait_until((tmp_path / "ready").exists)  # SIGTERM is ignored from here on

    began = time.monotonic()
    assert pid_file.stop(timeout=0.6) is True
    assert time.monotonic() - began >= 0.6  # SIGTERM did not end it: it waited it out
    _wait_until(lambda: not alive(pid))  # SIGKILL did
    assert not pid_file.path.exists()


def test_a_process_that_is_not_our_child_is_stopped_too(tmp_path: Path, started: list[int]) -> None:
    command = [sys.executable, "-c", ORPHANS_A_SLEEPER, str(tmp_path)]
    output = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    pid = int(output.stdout)
    started.append(pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    _wait_for_exec(pid, _marks(tmp_path))
    pid_file = PidFile(tmp_path / "sleeper.pid", _marks(tmp_path))
    pid_file.record(pid)
    assert pid_file.recorded() == pid

    assert pid_file.stop(timeout=20.0) is True
    assert not alive(pid)
    assert not pid_file.path.exists()


def test_a_pid_file_naming_a_dead_process_is_forgotten(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", SLEEPER.replace("30", "0"), str(tmp_path)])
    process.wait(timeout=30)
    pid_file = PidFile(tmp_path / "sleeper.pid", (b"time.sleep(0)", str(tmp_path).encode()))
    pid_file.record(process.pid)
    assert pid_file.recorded() is None
    assert not pid_file.path.exists()
    assert pid_file.stop(timeout=1.0) is False


def test_a_pid_file_naming_a_zombie_is_forgotten(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass", str(tmp_path)])
    stat = Path(f"/proc/{process.pid}/stat")
    _wait_until(lambda: stat.read_text().split(") ", 1)[1].startswith("Z"))  # exited, unreaped
    pid_file = PidFile(tmp_path / "zombie.pid", (b"pass", str(tmp_path).encode()))
    pid_file.record(process.pid)
    try:
        assert pid_file.recorded() is None
        assert not pid_file.path.exists()
    finally:
        process.wait(timeout=10)


def test_a_pid_file_naming_a_foreign_process_is_forgotten_and_never_signalled(
    tmp_path: Path, started: list[int]
) -> None:
    """Alive, but another program, or the same program for another instance: not ours."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    process = subprocess.Popen([sys.executable, "-c", SLEEPER, str(theirs)])
    started.append(process.pid)
    _wait_for_exec(process.pid, _marks(theirs))  # so that it is refused for what it runs
    for foreign in (os.getpid(), process.pid):
        pid_file = PidFile(ours / "sleeper.pid", _marks(ours))
        pid_file.record(foreign)
        assert pid_file.recorded() is None
        assert not pid_file.path.exists()
        pid_file.record(foreign)
        assert pid_file.stop(timeout=1.0) is False
        assert not pid_file.path.exists()
    assert process.poll() is None  # still running: stop() never signalled it


@pytest.mark.parametrize("text", ["", "not a pid"])
def test_an_unreadable_pid_file_reports_nothing_and_is_left_to_its_writer(
    tmp_path: Path, text: str
) -> None:
    """Empty is what a reader sees between a writer's truncate and write: not stale."""
    pid_file = PidFile(tmp_path / "server.pid", _marks(tmp_path))
    pid_file.path.write_text(text)
    assert pid_file.recorded() is None
    assert pid_file.stop(timeout=1.0) is False
    assert pid_file.path.read_text() == text


def test_a_missing_pid_file_reports_nothing(tmp_path: Path) -> None:
    pid_file = PidFile(tmp_path / "server.pid", _marks(tmp_path))
    assert pid_file.recorded() is None
    assert pid_file.stop(timeout=1.0) is False
    pid_file.forget()  # nothing to remove: no error
    assert not pid_file.path.exists()


def test_a_pid_file_needs_a_mark_to_recognise_its_process_by(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mark"):
        PidFile(tmp_path / "server.pid", ())
