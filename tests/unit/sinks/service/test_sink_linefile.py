"""JSON Lines files: rotated by size, fsynced, and identical after a crash and replay."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from callmap.errors import TemporaryError
from callmap.wire import Edge, Endpoint
from sinks.changes import Change, Position
from sinks.maps.readers import read_jsonl
from sinks.service.destinations.linefile import LineFileSink, OcsfFileSink


def change(offset: int, event: str = "new") -> Change:
    edge = Edge(
        edge_id=f"e{offset % 7}",
        event=event,  # type: ignore[arg-type]
        cluster="c",
        client=Endpoint(type="workload", namespace="a", name="x", kind="Deployment"),
        server=Endpoint(type="external", dns_name=f"host{offset % 7}.example"),
        ports=(443,),
        first_seen=1.0,
        last_seen=1.0 + offset,
    )
    return Change.of(edge, Position("edges", 0, offset))


async def write(directory: Path, offsets: range, max_bytes: int = 1000) -> LineFileSink:
    sink = LineFileSink(directory, max_bytes=max_bytes)
    await sink.open()
    for offset in offsets:
        sink.add(change(offset))
    await sink.flush()
    return sink


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.suffix == ".jsonl"}


async def test_files_rotate_by_size_and_hold_every_event_once(tmp_path: Path) -> None:
    sink = await write(tmp_path, range(20), max_bytes=1000)
    files = sink.files()
    assert len(files) > 1
    assert all(path.stat().st_size <= 1000 for _, path in files)
    lines = [line for _, path in files for line in path.read_bytes().splitlines()]
    assert len(lines) == 20


async def test_a_crash_before_commit_then_replay_leaves_identical_files(tmp_path: Path) -> None:
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    await write(clean, range(30))
    await write(crashed, range(18))  # flushed, crash before the Kafka commit of 12..17
    await write(crashed, range(12, 30))  # Kafka replays from 12
    assert snapshot(crashed) == snapshot(clean)


async def test_a_flush_cut_short_is_cut_off_on_restart(tmp_path: Path) -> None:
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    await write(clean, range(30))
    sink = await write(crashed, range(10))
    _, last = sink.files()[-1]
    with last.open("ab") as handle:  # half a line of a flush that never completed
        handle.write(b'{"v":1,"edge_id":"e3","ev')
    (crashed / "edges-000099.jsonl").write_bytes(b"{}\n")  # and a file it had started
    await write(crashed, range(10, 30))
    assert snapshot(crashed) == snapshot(clean)


async def test_a_missing_directory_is_a_temporary_fault_and_nothing_is_lost(tmp_path: Path) -> None:
    directory = tmp_path / "out"
    sink = await write(directory, range(5))
    os.rename(directory, tmp_path / "away")  # the volume went away
    for offset in range(5, 10):
        sink.add(change(offset))
    with pytest.raises(TemporaryError):
        await sink.flush()
    os.rename(tmp_path / "away", directory)
    await sink.flush()
    clean = await write(tmp_path / "clean", range(10))
    assert snapshot(directory) == snapshot(clean.directory)


async def test_old_files_are_pruned_to_keep(tmp_path: Path) -> None:
    sink = LineFileSink(tmp_path, max_bytes=300, keep=2)
    await sink.open()
    for offset in range(40):
        sink.add(change(offset))
        await sink.flush()
    numbers = [number for number, _ in sink.files()]
    assert len(numbers) == 2 and numbers[-1] > 2


async def test_tombstones_are_lines_too_and_read_back(tmp_path: Path) -> None:
    sink = LineFileSink(tmp_path)
    await sink.open()
    sink.add(change(1))
    sink.add(change(2))
    sink.add(Change("e1", None, Position("edges", 0, 3)))
    await sink.flush()
    assert [e.edge_id for e in read_jsonl(tmp_path).edges] == ["e2"]


async def test_ocsf_files_leave_tombstones_out(tmp_path: Path) -> None:
    sink = OcsfFileSink(tmp_path)
    await sink.open()
    sink.add(change(1))
    sink.add(Change("e1", None, Position("edges", 0, 2)))
    await sink.flush()
    ((_, path),) = sink.files()
    assert path.name == "ocsf-000001.jsonl" and len(path.read_bytes().splitlines()) == 1
    assert sink.stats.skipped["not_rendered"] == 1
