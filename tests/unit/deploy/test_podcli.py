"""The command checker of the deploy tests is strict: what the pod would reject, it rejects."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from helpers.podcli import FileSystem, parse_command, settings_variables


def test_an_option_the_command_does_not_have_is_an_error() -> None:
    with pytest.raises(click.NoSuchOption):
        parse_command(["streams", "worker", "--partitions", "12"], {})


def test_a_subcommand_that_does_not_exist_is_an_error() -> None:
    with pytest.raises(click.UsageError):
        parse_command(["capture", "everything"], {})


def test_a_value_of_the_wrong_type_is_an_error() -> None:
    with pytest.raises(click.BadParameter):
        parse_command(["capture", "run", "--flush-interval", "soon"], {})


def test_a_missing_required_option_is_an_error() -> None:
    with pytest.raises(click.MissingParameter):
        parse_command(["sink", "sqlite"], {})


def test_a_file_must_exist_in_the_containers_file_system(tmp_path: Path) -> None:
    args = ["sink", "postgres", "--dsn-file", "/var/run/secrets/callmap/postgres/dsn"]
    with pytest.raises(click.BadParameter):
        parse_command(args, {})
    files = FileSystem(tmp_path)
    files.files("/var/run/secrets/callmap/postgres", ["dsn"])
    parsed = parse_command(args, {}, files)
    assert parsed.path == ("callmap", "sink", "postgres")
    assert parsed.params["dsn_file"] == tmp_path / "var/run/secrets/callmap/postgres/dsn"


def test_options_come_from_the_containers_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLMAP_NODE", "from-the-test-process")
    assert parse_command(["capture", "run"], {"CALLMAP_NODE": "node-a"}).params["node"] == "node-a"
    assert parse_command(["capture", "run"], {}).params["node"] != "from-the-test-process"


def test_the_variables_callmap_reads_include_the_secret_files() -> None:
    names = settings_variables()
    assert {"CALLMAP_KAFKA_BOOTSTRAP", "CALLMAP_CLUSTER", "CALLMAP_TOPIC_REPLICATION"} <= names
    assert {"CALLMAP_KAFKA_SASL_PASSWORD_FILE", "CALLMAP_KAFKA_SSL_CAFILE"} <= names
    assert "CALLMAP_KAFKA_PASSWORD" not in names
