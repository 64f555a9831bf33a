"""``callmap sink KIND`` builds one typed settings object from its options and the
environment, and that object makes the destination. The sink is not run here: the
command's last step is replaced by one that keeps what it was given."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sinks.service import cli
from sinks.service.destinations.linefile import LineFileSink, OcsfFileSink
from sinks.service.destinations.ocsfkafka import OcsfKafkaSink
from sinks.service.destinations.postgres import PostgresSink
from sinks.service.destinations.sqlite import SqliteSink
from sinks.service.destinations.syslog import SyslogSink
from sinks.service.settings import (
    JsonlSettings,
    OcsfSettings,
    PostgresSettings,
    SinkSettings,
    SqliteSettings,
    SyslogSettings,
)


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[SinkSettings]:
    """The settings each command ran with (instead of running the sink)."""
    seen: list[SinkSettings] = []
    monkeypatch.setattr(cli, "run_command", seen.append)
    for name in ("CALLMAP_METRICS_PORT", "CALLMAP_POSTGRES_DSN", "CALLMAP_SYSLOG_TARGET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CALLMAP_KAFKA_BOOTSTRAP", "kafka.example:9092")
    return seen


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.sink, list(args))


def test_the_shared_options_and_kafka_come_once_into_the_run(
    taken: list[SinkSettings], tmp_path: Path
) -> None:
    assert invoke("jsonl", "--dir", str(tmp_path), "--keep", "3").exit_code == 0
    (settings,) = taken
    assert isinstance(settings, JsonlSettings)
    assert (settings.directory, settings.keep, settings.max_bytes) == (tmp_path, 3, 64 << 20)
    run = settings.run
    assert (run.batch_size, run.flush_interval, run.max_backoff) == (500, 1.0, 30.0)
    assert (run.metrics_port, run.once) == (9810, False)
    assert run.kafka.bootstrap_servers == "kafka.example:9092"
    options = run.runner_options(settings.kind)
    assert options.group_id == "callmap-sink-jsonl" and options.batch_size == 500


def test_options_and_their_environment_variables(
    taken: list[SinkSettings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLMAP_METRICS_PORT", "0")
    database = tmp_path / "map.db"
    args = ["sqlite", "--path", str(database), "--group", "g", "--batch-size", "7", "--once"]
    assert invoke(*args).exit_code == 0
    (settings,) = taken
    assert isinstance(settings, SqliteSettings) and settings.path == database
    assert settings.run.metrics_port == 0 and settings.run.once
    assert settings.run.runner_options(settings.kind).group_id == "g"


def test_global_edges_of_some_clusters(taken: list[SinkSettings], tmp_path: Path) -> None:
    args = ["--path", str(tmp_path / "m.db"), "--global", "--cluster", "east", "--cluster", "west"]
    assert invoke("sqlite", *args).exit_code == 0
    (settings,) = taken
    options = settings.run.runner_options(settings.kind)
    assert options.topic.name == "callmap.global-edges.v1"
    assert options.group_id == "callmap-sink-sqlite-global"
    assert options.clusters == {"east", "west"}
    assert invoke("sqlite", "--path", str(tmp_path / "m.db")).exit_code == 0
    plain = taken[1].run.runner_options("sqlite")
    assert plain.topic.name == "callmap.edges.v1" and plain.clusters == frozenset()


def test_a_bad_kafka_environment_is_one_line_and_nothing_runs(
    taken: list[SinkSettings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLMAP_KAFKA_SECURITY_PROTOCOL", "carrier-pigeon")
    result = invoke("jsonl", "--dir", str(tmp_path))
    assert result.exit_code == 1 and "CALLMAP_KAFKA_SECURITY_PROTOCOL" in result.output
    assert not taken


def test_postgres_reads_its_dsn_from_a_file_and_never_shows_it(
    taken: list[SinkSettings], tmp_path: Path
) -> None:
    secret = tmp_path / "dsn"
    secret.write_text("postgresql://callmap:s3cret@db/callmap\n")
    assert invoke("postgres", "--dsn-file", str(secret)).exit_code == 0
    (settings,) = taken
    assert isinstance(settings, PostgresSettings)
    assert settings.dsn == "postgresql://callmap:s3cret@db/callmap"
    assert "s3cret" not in repr(settings)
    result = invoke("postgres")
    assert result.exit_code == 2 and "give --dsn or --dsn-file" in result.output


def test_syslog_parses_its_target_where_it_is_given(taken: list[SinkSettings]) -> None:
    result = invoke("syslog", "--target", "tls://siem.example", "--facility", "local3")
    assert result.exit_code == 0
    (settings,) = taken
    assert isinstance(settings, SyslogSettings)
    assert (settings.target.transport, settings.target.port) == ("tls", 6514)
    assert settings.form.facility == 19 and settings.state is None
    result = invoke("syslog", "--target", "http://siem.example")
    assert result.exit_code == 2 and "--target" in result.output


def test_ocsf_takes_exactly_one_of_a_directory_and_a_topic(
    taken: list[SinkSettings], tmp_path: Path
) -> None:
    for args in ([], ["--dir", str(tmp_path), "--topic", "siem"]):
        result = invoke("ocsf", *args)
        assert result.exit_code == 2 and "exactly one of --dir and --topic" in result.output
    assert invoke("ocsf", "--topic", "siem").exit_code == 0
    (settings,) = taken
    assert isinstance(settings, OcsfSettings) and settings.topic == "siem"


def test_each_kind_makes_its_destination(
    taken: list[SinkSettings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for args in (
        ["jsonl", "--dir", str(tmp_path / "edges")],
        ["sqlite", "--path", str(tmp_path / "map.db"), "--busy-timeout", "2"],
        ["postgres", "--dsn", "postgresql://db/callmap"],
        ["syslog", "--target", "udp://127.0.0.1", "--state", str(tmp_path / "journal")],
        ["ocsf", "--dir", str(tmp_path / "ocsf"), "--max-bytes", "1000"],
        ["ocsf", "--topic", "siem"],
    ):
        assert invoke(*args).exit_code == 0, args
    with caplog.at_level(logging.WARNING):
        sinks = [settings.sink() for settings in taken]
    kinds = [type(sink) for sink in sinks]
    assert kinds == [
        LineFileSink,
        SqliteSink,
        PostgresSink,
        SyslogSink,
        OcsfFileSink,
        OcsfKafkaSink,
    ]
    assert [sink.kind for sink in sinks] == [settings.kind for settings in taken]
    assert isinstance(sinks[1], SqliteSink) and sinks[1].busy_timeout == 2.0
    assert isinstance(sinks[4], OcsfFileSink) and sinks[4].max_bytes == 1000
    assert isinstance(sinks[5], OcsfKafkaSink) and sinks[5].kafka is taken[5].run.kafka
    # The topic has no journal file: a crash between a send and the commit sends again.
    assert [r.message for r in caplog.records] == [
        "no --state file: replays after a crash are sent again"
    ]


def test_format_ecs_picks_ecs_lines_and_ecs_messages(
    taken: list[SinkSettings], tmp_path: Path
) -> None:
    assert invoke("jsonl", "--dir", str(tmp_path), "--format", "ecs").exit_code == 0
    assert invoke("syslog", "--target", "udp://127.0.0.1:514", "--format", "ecs").exit_code == 0
    assert invoke("syslog", "--target", "udp://127.0.0.1:514", "--format", "xml").exit_code == 2
    jsonl, syslog = taken
    assert isinstance(jsonl, JsonlSettings) and isinstance(syslog, SyslogSettings)
    files = jsonl.sink()
    assert isinstance(files, LineFileSink)
    assert files.prefix == "ecs" and files.file(1).name == "ecs-000001.jsonl"
    assert syslog.form.payload == "ecs"
    assert invoke("jsonl", "--dir", str(tmp_path)).exit_code == 0
    assert taken[-1].sink().prefix == "edges"  # type: ignore[attr-defined]
