"""The map commands build one typed settings object from their options and the
environment. The map is not read here: each command's last step is replaced by one
that keeps what it was given."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sinks.maps import cli
from sinks.maps.readers import Source
from sinks.maps.settings import ExportSettings, ListSettings, VisualizeSettings

Taken = list[ListSettings | ExportSettings | VisualizeSettings]


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> Taken:
    """The settings each command ran with (instead of reading and writing the map)."""
    seen: Taken = []
    for name in ("show_list", "export_map", "draw_map"):
        monkeypatch.setattr(cli, name, seen.append)
    monkeypatch.delenv("CALLMAP_MAP_FROM", raising=False)
    monkeypatch.setenv("CALLMAP_KAFKA_BOOTSTRAP", "kafka.example:9092")
    return seen


def invoke(command: object, *args: str) -> Result:
    return CliRunner().invoke(command, list(args))  # type: ignore[arg-type]


def test_the_query_holds_the_source_the_filters_and_kafka(taken: Taken) -> None:
    args = ["-n", "shop", "--client", "shop/frontend", "--since", "2023-11-14T22:13:20Z"]
    assert invoke(cli.list_command, *args, "--output", "json").exit_code == 0
    (settings,) = taken
    assert isinstance(settings, ListSettings) and settings.output == "json"
    query = settings.query
    assert query.source == Source("kafka", "")
    assert query.selection.namespaces == {"shop"} and query.selection.clients == {"shop/frontend"}
    assert query.selection.since == 1_700_000_000.0 and not query.selection.include_expired
    assert query.kafka.bootstrap_servers == "kafka.example:9092"


def test_global_edges_and_clusters(taken: Taken) -> None:
    args = ["--global", "--cluster", "east", "--cluster", "west"]
    assert invoke(cli.list_command, *args).exit_code == 0
    query = taken[0].query
    assert query.source == Source("kafka", "", global_edges=True)
    assert query.selection.clusters == {"east", "west"}
    result = invoke(cli.list_command, "--global", "--from", "sqlite:///map.db")
    assert result.exit_code == 1 and "--global reads the global edges topic" in result.output


def test_the_source_may_come_from_the_environment(
    taken: Taken, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLMAP_MAP_FROM", "sqlite:///map.db")
    assert invoke(cli.list_command).exit_code == 0
    assert taken[0].query.source == Source("sqlite", "map.db")


def test_export_settings(taken: Taken, tmp_path: Path) -> None:
    labels = tmp_path / "labels.yaml"
    labels.write_text("{}\n")
    args = ["--format", "cilium", "--json", "--labels", str(labels), "--dns-label", "a=b"]
    assert invoke(cli.export, *args, "-o", str(tmp_path / "out")).exit_code == 0
    (settings,) = taken
    assert isinstance(settings, ExportSettings)
    assert (settings.format, settings.encoding, settings.labels) == ("cilium", "json", labels)
    assert settings.dns_labels == {"a": "b"} and settings.dns_namespace == "kube-system"
    assert settings.output == tmp_path / "out" and settings.wants_identities


def test_one_file_per_object_for_a_directory_or_a_path_ending_in_a_slash(
    taken: Taken, tmp_path: Path
) -> None:
    (tmp_path / "there").mkdir()
    for output in ("there", "new/", "new", "map.yaml"):
        assert (
            invoke(cli.export, "--format", "intents", "-o", f"{tmp_path}/{output}").exit_code == 0
        )
    assert [s.per_object for s in taken if isinstance(s, ExportSettings)] == [
        True,
        True,
        False,
        False,
    ]


@pytest.mark.parametrize(
    "args, identities",
    [
        (["--format", "networkpolicy"], True),
        (["--format", "networkpolicy", "--no-identities"], False),
        (["--format", "intents"], False),
        (["--format", "csv"], False),
    ],
)
def test_only_label_selecting_formats_read_identities(
    taken: Taken, args: list[str], identities: bool
) -> None:
    assert invoke(cli.export, *args).exit_code == 0
    (settings,) = taken
    assert isinstance(settings, ExportSettings) and settings.wants_identities is identities


def test_dns_labels_are_checked_for_the_kubernetes_objects_only(taken: Taken) -> None:
    assert invoke(cli.export, "--format", "networkpolicy").exit_code == 0
    assert invoke(cli.export, "--format", "csv", "--dns-label", "bogus").exit_code == 0
    policies, data = taken
    assert isinstance(policies, ExportSettings) and isinstance(data, ExportSettings)
    assert policies.dns_labels == {"k8s-app": "kube-dns"} and data.dns_labels == {}
    result = invoke(cli.export, "--format", "intents", "--dns-label", "bogus")
    assert result.exit_code == 1 and "--dns-label 'bogus': expected KEY=VALUE" in result.output


@pytest.mark.parametrize("name, drawing", [("m.svg", "svg"), ("m.PNG", "png"), ("m.gv", "dot")])
def test_visualize_draws_what_the_file_name_says(
    taken: Taken, tmp_path: Path, name: str, drawing: str
) -> None:
    assert invoke(cli.visualize, "-o", str(tmp_path / name), "--title", "t").exit_code == 0
    (settings,) = taken
    assert isinstance(settings, VisualizeSettings)
    assert (settings.drawing, settings.title) == (drawing, "t")
