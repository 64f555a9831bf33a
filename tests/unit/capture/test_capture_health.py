"""What the capture agent's liveness probe is told: a dead capture thread, stuck scans."""

from __future__ import annotations

import socket
import time

import pytest

from callmap.counters import Counters
from capture.sniffer import Sniffer
from capture.sockagent import SocketScanner


class _FolderWithoutRing:
    """What the sniffer asks of a folder, for sockets that have no receive ring."""

    full = False  # the sniffer asks after each burst whether to call on_full

    def take_block(self, ring: memoryview, start: int, size: int) -> tuple[int, bool]:
        raise AssertionError("a socket pair has no receive ring")


class _BrokenFolder(_FolderWithoutRing):
    """A folder with a bug: the first frame kills the thread that hands it over."""

    def add_frame(self, frame: memoryview, ts: float) -> None:
        raise RuntimeError("a bug in the parser")


def _wait_for(check, seconds: float = 5.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while (value := check()) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return value


def test_a_capture_thread_that_dies_says_why() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    sniffer = Sniffer([ours], _BrokenFolder())  # type: ignore[arg-type]
    assert sniffer.failure() is None  # not started: nothing to report
    sniffer.start()
    try:
        assert sniffer.failure() is None  # reading
        theirs.send(b"a frame")
        assert _wait_for(sniffer.failure) == (
            "the capture thread died: RuntimeError('a bug in the parser')"
        )
    finally:
        sniffer.stop()
        theirs.close()
    assert sniffer.failure() is None  # stopped on purpose


def test_a_capture_thread_that_keeps_reading_is_healthy() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    frames: list[bytes] = []

    class Folder(_FolderWithoutRing):
        def add_frame(self, frame: memoryview, ts: float) -> None:
            frames.append(bytes(frame))

    sniffer = Sniffer([ours], Folder())  # type: ignore[arg-type]
    sniffer.start()
    try:
        theirs.send(b"a frame")
        assert _wait_for(lambda: frames or None) == [b"a frame"]
        assert sniffer.failure() is None
    finally:
        sniffer.stop()
        theirs.close()


def test_scans_that_stop_finishing_are_reported_after_three_intervals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    scanner = SocketScanner(cluster="c", node="n", counters=Counters().stage("sockets"))
    assert scanner.stalled(interval=30.0) is None
    now[0] += 90.0
    assert scanner.stalled(interval=30.0) is None  # three intervals: still patient
    now[0] += 1.0
    assert scanner.stalled(interval=30.0) == "no socket scan finished for 91s (every 30s expected)"
    scanner.last_scan_done = now[0]
    assert scanner.stalled(interval=30.0) is None
    now[0] += 61.0  # a short interval still waits at least a minute
    assert scanner.stalled(interval=1.0) == "no socket scan finished for 61s (every 1s expected)"
