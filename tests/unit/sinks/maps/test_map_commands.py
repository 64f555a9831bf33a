"""The map commands as users run them (click's runner), reading a JSON Lines file."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from helpers.sinkcorpus import GOLDEN

from sinks.maps.cli import export, list_command, visualize


@pytest.fixture
def source(tmp_path: Path) -> str:
    path = tmp_path / "edges.jsonl"
    shutil.copy(GOLDEN / "input-edges.jsonl", path)
    return f"jsonl:{path}"


def run(command, *args: str):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(command, list(args), catch_exceptions=False)
    return result


def test_list_reads_any_source_and_filters(source: str) -> None:
    result = run(list_command, "--from", source, "--namespace", "finance")
    assert result.exit_code == 0
    assert result.output.startswith("ledger in namespace finance calls:\n")
    assert (
        "checkoutservice in namespace shop calls:\n  - ledger in namespace finance\n"
        in result.output
    )


def test_list_as_json(source: str) -> None:
    result = run(list_command, "--from", source, "--output", "json", "--client", "shop/frontend")
    (client,) = json.loads(result.output)
    assert client["display"] == "frontend in namespace shop"


def test_list_with_health_adds_it_only_to_calls_that_have_it(source: str) -> None:
    args = ["--from", source, "--client", "shop/frontend"]
    plain = run(list_command, *args).output
    result = run(list_command, *args, "--health")
    assert result.exit_code == 0
    assert "  - checkoutservice [failing]: 3 failed, 1 reset, 12 opened" in result.output
    assert (
        result.output.replace(
            " [failing]: 3 failed, 1 reset, 12 opened, 11 closed, 48.2 kB sent, 1.52 MB received",
            "",
        )
        == plain
    )


def test_list_as_json_carries_health_as_the_wire_has_it(source: str) -> None:
    result = run(list_command, "--from", source, "--output", "json", "--client", "shop/frontend")
    (client,) = json.loads(result.output)
    calls = {
        call["server"].get("name") or call["server"].get("ip"): call for call in client["calls"]
    }
    failing = calls["checkoutservice"]
    assert failing["health"] == {
        "opened": 12,
        "closed": 11,
        "failed": 3,
        "resets": 1,
        "bytes_sent": 48210,
        "bytes_received": 1520000,
    }
    assert failing["health_total"]["opened"] == 140 and failing["failing"] is True
    assert "health" not in calls["10.9.8.7"]  # no conntrack report: written as before


def test_export_writes_one_file_per_object_into_a_directory(source: str, tmp_path: Path) -> None:
    out = tmp_path / "intents"
    out.mkdir()
    result = run(export, "--from", source, "--format", "intents", "-o", str(out))
    assert result.exit_code == 0
    names = sorted(path.name for path in out.iterdir())
    assert "clientintents-shop-checkoutservice.yaml" in names
    document = yaml.safe_load((out / "clientintents-shop-checkoutservice.yaml").read_text())
    assert document["kind"] == "ClientIntents"


def test_export_makes_the_directory_a_path_ending_in_a_slash_names(
    source: str, tmp_path: Path
) -> None:
    out = tmp_path / "new" / "policies"
    args = ["--from", source, "--format", "networkpolicy", "--json", "-o", f"{out}/"]
    assert run(export, *args).exit_code == 0
    assert out.is_dir() and "networkpolicy-finance-callmap-ledger-ingress.json" in {
        path.name for path in out.iterdir()
    }


def test_export_warnings_go_to_stderr_escaped(source: str) -> None:
    result = CliRunner().invoke(
        export, ["--from", source, "--format", "networkpolicy", "--egress"], catch_exceptions=False
    )
    assert result.exit_code == 0
    assert "warning: bad\\nns/Deployment/x" in result.stderr
    assert all(doc["kind"] == "NetworkPolicy" for doc in yaml.safe_load_all(result.stdout))


def test_export_takes_pod_labels_from_a_file(source: str, tmp_path: Path) -> None:
    labels = tmp_path / "labels.yaml"
    labels.write_text("finance/ledger: {app: ledger, team: money}\n")
    result = run(
        export,
        "--from",
        source,
        "--format",
        "networkpolicy",
        "--labels",
        str(labels),
        "-n",
        "finance",
    )
    (policy,) = yaml.safe_load_all(result.stdout)
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app": "ledger", "team": "money"}}


def test_export_edges_as_csv_to_a_file(source: str, tmp_path: Path) -> None:
    out = tmp_path / "edges.csv"
    assert run(export, "--from", source, "--format", "csv", "-o", str(out)).exit_code == 0
    assert out.read_text().startswith("edge_id,cluster,event,")


def test_export_csv_marks_slow_calls_by_slow_ms(source: str) -> None:
    def slow_column(*args: str) -> set[str]:
        result = run(export, "--from", source, "--format", "csv", *args)
        return {row["slow"] for row in csv.DictReader(io.StringIO(result.output, newline=""))}

    assert slow_column() == {"", "false", "true"}  # cartservice's p99 is 240 ms
    assert slow_column("--slow-ms", "1000") == {"", "false"}


def test_visualize_writes_dot_without_graphviz(source: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    out = tmp_path / "map.dot"
    assert run(visualize, "--from", source, "-o", str(out)).exit_code == 0
    assert out.read_text().startswith('digraph "callmap" {')


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("suffix, magic", [(".svg", b"<?xml"), (".png", b"\x89PNG")])
def test_visualize_draws_svg_and_png(
    source: str, tmp_path: Path, suffix: str, magic: bytes
) -> None:
    out = tmp_path / f"map{suffix}"
    assert run(visualize, "--from", source, "-o", str(out)).exit_code == 0
    assert out.read_bytes().startswith(magic)


@pytest.fixture
def world(tmp_path: Path) -> str:
    path = tmp_path / "global.jsonl"
    shutil.copy(GOLDEN / "input-global-edges.jsonl", path)
    return f"jsonl:{path}"


def test_list_of_one_clusters_global_map(world: str) -> None:
    result = run(list_command, "--from", world, "--cluster", "west")
    assert result.exit_code == 0
    assert result.output.startswith(
        "frontend in namespace shop (cluster east) calls:\n"
        "  - api in namespace shop (cluster west)\n"
        "  - ledger in namespace shop (cluster west)\n"
    )
    assert "api.stripe.com" not in result.output  # east's own calls are not west's map


def test_export_for_one_cluster_counts_cross_cluster_peers(world: str) -> None:
    args = ["--from", world, "--format", "cilium", "--cluster", "east", "--no-identities"]
    result = CliRunner().invoke(export, args, catch_exceptions=False)
    assert result.exit_code == 0
    assert "callmap export: cross_cluster_peers=3" in result.stderr
    kinds = {doc["metadata"]["name"] for doc in yaml.safe_load_all(result.stdout)}
    assert kinds == {"callmap-cart", "callmap-frontend"}
    several = CliRunner().invoke(export, ["--from", world, "--format", "intents"])
    assert several.exit_code == 1 and "choose one with --cluster" in several.output


def test_bad_input_is_one_clear_line(source: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(list_command, ["--from", "mysql://x"])
    assert result.exit_code == 1 and "expected kafka, sqlite:///PATH" in result.output
    result = CliRunner().invoke(list_command, ["--from", source, "--since", "soon"])
    assert result.exit_code == 1 and "--since 'soon'" in result.output
    result = CliRunner().invoke(visualize, ["--from", source, "-o", str(tmp_path / "m.txt")])
    assert result.exit_code == 2


def test_list_marks_calls_slow_from_the_threshold_asked(source: str) -> None:
    args = ["--from", source, "--client", "shop/checkoutservice", "--health"]
    slow = "  - cartservice [slow]: 40 opened, 40 closed, RTT p50 1.1 ms, p99 240 ms, 6 retransmits"
    assert slow in run(list_command, *args).output  # the 200 ms default
    assert slow.replace(" [slow]", "") in run(list_command, *args, "--slow-ms", "250").output
    assert run(list_command, *args, "--slow-ms", "0").exit_code != 0  # every call would be slow


def test_list_as_json_carries_the_windows_round_trips(source: str) -> None:
    args = ["--from", source, "--output", "json", "--client", "shop/checkoutservice"]
    (client,) = json.loads(run(list_command, *args, "--slow-ms", "500").output)
    cart = next(c for c in client["calls"] if c["server"].get("name") == "cartservice")
    assert (cart["rtt_p50_ms"], cart["rtt_p99_ms"], cart["rtt_mean_ms"]) == (1.117, 240.387, 20.771)
    assert (cart["retransmits"], cart["slow"], cart["failing"]) == (6, False, False)


def test_visualize_draws_calls_slow_from_the_threshold_asked(source: str, tmp_path: Path) -> None:
    out = tmp_path / "map.dot"
    assert run(visualize, "--from", source, "-o", str(out)).exit_code == 0
    assert 'color="#e65100"' in out.read_text()
    assert run(visualize, "--from", source, "-o", str(out), "--slow-ms", "300").exit_code == 0
    assert 'color="#e65100"' not in out.read_text()
