"""File sinks on a real broker: JSON Lines and OCSF files, crash and replay byte for
byte, a flush cut short, the volume away for a while, and the map read back."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from callmap.wire import Edge, Endpoint, FlowHealth, RttSamples
from sinks.changes import Change
from sinks.lifecycle import EdgeBook
from sinks.maps.cli import list_command
from sinks.maps.readers import read_jsonl
from sinks.service.destinations.linefile import LineFileSink, OcsfFileSink

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(90)]


def events(count: int) -> list[Edge]:
    return [
        Edge(
            edge_id=f"f-{index % 25}",
            event="new" if index < 25 else "refresh",
            cluster="test",
            client=Endpoint(
                type="workload", namespace="shop", name=f"c{index % 25}", kind="Deployment"
            ),
            server=Endpoint(type="external", dns_name=f"s{index % 25}.example.org"),
            ports=(443,),
            first_seen=1.0,
            last_seen=1.0 + index,
            count=1 + index // 25,
        )
        for index in range(count)
    ]


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.jsonl"))}


async def test_a_crash_between_write_and_commit_then_replay_changes_nothing(
    edges_topic, tmp_path: Path
) -> None:
    produced = events(100)
    await edges_topic.produce(produced)
    sink = LineFileSink(tmp_path, max_bytes=4000)
    await edges_topic.crash_after_flush(sink, "jsonl-crash", len(produced))
    written = files(tmp_path)
    *_, (_, last) = sink.files()
    with last.open("ab") as handle:  # and a later flush died half way through a line
        handle.write(b'{"v":1,"edge_id":"f-3","eve')
    replay = LineFileSink(tmp_path, max_bytes=4000)
    await edges_topic.run_to_end(replay, "jsonl-crash")
    assert replay.stats.skipped["already_written"] == len(produced)
    assert files(tmp_path) == written and len(written) > 1


def lines_of(directory: Path) -> list[dict[str, object]]:
    return [json.loads(line) for data in files(directory).values() for line in data.splitlines()]


def assert_each_event_once_in_lifecycle_order(
    lines: list[dict[str, object]], produced: list[Edge]
) -> None:
    seen = [(line["edge_id"], line["last_seen"]) for line in lines]
    assert sorted(seen) == sorted((e.edge_id, e.last_seen) for e in produced)  # once each
    for edge_id in {e.edge_id for e in produced}:
        times = [t for i, t in seen if i == edge_id]
        assert times == sorted(times), f"{edge_id} out of order"  # type: ignore[type-var]


async def test_a_crash_half_way_then_replay_writes_each_event_once(
    edges_topic, tmp_path: Path
) -> None:
    produced = events(100)
    await edges_topic.produce(produced)
    sink = LineFileSink(tmp_path, max_bytes=4000)
    await edges_topic.crash_after_flush(sink, "jsonl-half", 40, batch_size=40)
    assert 0 < sink.stats.written < len(produced)
    await edges_topic.run_to_end(LineFileSink(tmp_path, max_bytes=4000), "jsonl-half")
    assert_each_event_once_in_lifecycle_order(lines_of(tmp_path), produced)


async def test_the_volume_away_for_a_while_loses_nothing(edges_topic, tmp_path: Path) -> None:
    directory = tmp_path / "out"
    sink = LineFileSink(directory)
    runner = edges_topic.runner(sink, "jsonl-away")
    await runner.start()
    task = asyncio.create_task(runner.run(until_caught_up=True))
    os.rename(directory, tmp_path / "elsewhere")  # unmounted
    produced = events(50)
    await edges_topic.produce(produced)
    while sink.stats.retried < len(produced):
        assert not task.done()
        await asyncio.sleep(0.05)
    os.rename(tmp_path / "elsewhere", directory)  # back
    await asyncio.wait_for(task, 30)
    await runner.close()
    assert_each_event_once_in_lifecycle_order(lines_of(directory), produced)


async def test_the_map_is_read_back_from_the_files(
    edges_topic, tmp_path: Path, corpus_edges
) -> None:
    await edges_topic.produce([*corpus_edges, Change(corpus_edges[0].edge_id)])
    await edges_topic.run_to_end(LineFileSink(tmp_path), "jsonl-read")
    expected = EdgeBook().apply_all(map(Change.of, corpus_edges[1:])).edges()
    assert read_jsonl(tmp_path).edges == expected
    result = await asyncio.to_thread(
        CliRunner().invoke, list_command, ["--from", f"jsonl:{tmp_path}", "-n", "finance"]
    )
    assert result.output.startswith("ledger in namespace finance calls:\n")


async def test_json_lines_carry_each_events_health_as_the_wire_has_it(
    edges_topic, tmp_path: Path
) -> None:
    plain, refreshed = events(26)[0], events(26)[25]  # f-0 new, then refreshed
    lately = FlowHealth(opened=3, closed=2, failed=1, bytes_sent=900)
    told = msgspec.structs.replace(
        refreshed, health=lately, health_total=lately.plus(FlowHealth(opened=7, closed=7))
    )
    await edges_topic.produce([plain, told])
    await edges_topic.run_to_end(LineFileSink(tmp_path), "jsonl-health")
    first, second = lines_of(tmp_path)
    assert (first["health"], first["health_total"]) == (None, None)  # none reported: null
    assert second["health"] == {"opened": 3, "closed": 2, "failed": 1, "bytes_sent": 900}
    assert second["health_total"] == {"opened": 10, "closed": 9, "failed": 1, "bytes_sent": 900}
    assert read_jsonl(tmp_path).edges == [told]  # and read back by the map commands


async def test_json_lines_carry_round_trips_and_retransmits_as_the_wire_has_them(
    edges_topic, tmp_path: Path
) -> None:
    refreshed = events(26)[25]
    lately = FlowHealth(opened=2, retransmits=1, rtt=RttSamples.of(1000, 250_000))
    told = msgspec.structs.replace(refreshed, health=lately, health_total=lately)
    await edges_topic.produce([told])
    await edges_topic.run_to_end(LineFileSink(tmp_path), "jsonl-rtt")
    (line,) = lines_of(tmp_path)
    assert line["health"]["retransmits"] == 1
    assert line["health"]["rtt"] == {"samples": 2, "sum_us": 251_000, "buckets": [[39, 1], [71, 1]]}
    assert read_jsonl(tmp_path).edges == [told]


async def test_ocsf_files_hold_one_event_per_edge_event(
    edges_topic, tmp_path: Path, corpus_edges
) -> None:
    await edges_topic.produce(corpus_edges)
    sink = OcsfFileSink(tmp_path)
    await edges_topic.run_to_end(sink, "ocsf-files")
    (path,) = tmp_path.glob("ocsf-*.jsonl")
    lines = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert sorted(line["metadata"]["correlation_uid"] for line in lines) == sorted(
        edge.edge_id for edge in corpus_edges
    )
    assert {line["class_uid"] for line in lines} == {4001}
