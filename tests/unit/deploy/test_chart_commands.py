"""Every command the chart runs is a real ``callmap`` command with real options.

Each container's arguments go through the ``callmap`` command itself (its
groups and the subcommand's click parser, strictly), in a stand-in for the
container's file system, with the container's environment. Every CALLMAP_*
variable the chart sets must be one callmap reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.chartrender import ROOT, Rendered, render
from helpers.podcli import ParsedCommand, kubernetes_file_system, parse_command, settings_variables

from callmap.cli import COMMANDS
from callmap.config import load_settings
from callmap.metrics import METRICS_ADDRESS_VARIABLE

# What a downward-API variable holds in a pod (the tests need a value).
DOWNWARD = {
    "spec.nodeName": "node-a",
    "metadata.name": "callmap-watch-7d9f-abcde",
    "status.podIP": "10.244.0.7",
}


def container_env(container: dict[str, object]) -> dict[str, str]:
    env: dict[str, str] = {}
    for variable in container.get("env", []):  # type: ignore[attr-defined]
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            env[variable["name"]] = DOWNWARD[variable["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def component_of(document: dict[str, Any]) -> str:
    return str(document["metadata"]["labels"]["app.kubernetes.io/component"])


def entrypoint() -> list[str]:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ENTRYPOINT "):
            return list(json.loads(line.removeprefix("ENTRYPOINT ")))
    raise AssertionError("the Dockerfile has no ENTRYPOINT")


def parsed(
    document: dict[str, Any], pod: dict[str, Any], container: dict[str, Any], root: Path
) -> ParsedCommand:
    """``container``'s command, parsed in a stand-in for its file system under ``root``."""
    files = kubernetes_file_system(root / document["metadata"]["name"], pod, container)
    return parse_command(container["args"], container_env(container), files)


def each_container(
    chart: Rendered,
) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    for document, pod in chart.workloads():
        for container in pod["containers"]:
            yield document, pod, container


def test_the_image_runs_callmap_and_the_chart_only_gives_it_arguments(chart: Rendered) -> None:
    assert entrypoint()[-1] == "callmap"
    for _, pod in chart.workloads():
        for container in pod["containers"]:
            assert "command" not in container, container["name"]  # the entry point stays
            assert container["args"][0] in COMMANDS


def test_every_container_parses_with_the_real_command(chart: Rendered, tmp_path: Path) -> None:
    paths = {c["name"]: parsed(d, p, c, tmp_path).path for d, p, c in each_container(chart)}
    assert paths["watch"] == ("callmap", "watch")
    assert paths["streams"] == ("callmap", "streams", "worker")
    assert paths["topics"] == ("callmap", "topics", "create")
    if "aggregate" in paths:  # the hub's release only
        assert paths["aggregate"] == ("callmap", "aggregate")
    if "webmap" in paths:  # off by default
        assert paths["webmap"] == ("callmap", "serve")
    assert paths["capture"][:2] == ("callmap", "capture")
    sinks = {
        parsed(d, p, c, tmp_path).path for d, p, c in each_container(chart) if c["name"] == "sink"
    }
    assert sinks and all(path[:2] == ("callmap", "sink") for path in sinks)


def test_the_hub_aggregator_is_off_by_default_and_gets_its_peer_groups(
    default_chart: Rendered, everything_chart: Rendered
) -> None:
    assert not [d for d in default_chart.workloads() if "aggregate" in str(d[0])]
    _, container = everything_chart.component("aggregate")
    command = parse_command(container["args"], container_env(container))
    assert command.params["peers"] == ("east,west", "west,north")
    assert command.params["ttl"] == 172800.0
    (port,) = container["ports"]
    assert command.params["metrics_port"] == port["containerPort"] == 9812


def test_the_service_graph_exporter_is_off_by_default_and_reads_as_a_map_reader(
    default_chart: Rendered, everything_chart: Rendered
) -> None:
    assert not [d for d in default_chart.workloads() if "servicegraph" in str(d[0])]
    pod, container = everything_chart.component("servicegraph")
    command = parse_command(container["args"], container_env(container))
    assert command.path == ("callmap", "metrics")
    assert command.params["cluster"] == ("prod-eu-1",)
    assert command.params["max_series"] == 5000
    (port,) = container["ports"]
    assert command.params["metrics_port"] == port["containerPort"] == 19813
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert "kafka-user-map" in secrets and "kafka-user" not in secrets


def test_the_web_map_is_off_by_default_and_serves_every_address_of_its_pod(
    default_chart: Rendered, everything_chart: Rendered, tmp_path: Path
) -> None:
    assert not [d for d in default_chart.workloads() if "webmap" in str(d[0])]
    pod, container = everything_chart.component("webmap")
    # Every address: its Service's, and the loopback kubectl port-forward connects to.
    assert container["args"][:5] == ["serve", "--host", "0.0.0.0", "--port", "18080"]
    command = parsed(
        everything_chart.one("Deployment", "prod-callmap-webmap"), pod, container, tmp_path
    )
    assert command.path == ("callmap", "serve")
    assert command.params["source"] == "kafka"
    assert command.params["cluster"] == ("prod-eu-1", "east")
    assert command.params["namespace"] == ("shop", "payments")
    assert command.params["global_edges"] is True
    assert command.params["refresh"] == 10.0
    assert command.params["include_expired"] is True  # extraArgs
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "webmap-token"]
    mounted = tmp_path / "prod-callmap-webmap" / mount["mountPath"].lstrip("/")
    assert command.params["token_file"] == mounted / "token"
    (port,) = container["ports"]
    assert port == {"name": "http", "containerPort": 18080, "protocol": "TCP"}
    assert command.params["port"] == port["containerPort"]
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert "kafka-user-map" in secrets and "kafka-user" not in secrets


def test_the_web_map_with_defaults_runs_without_a_token(helm: Path, tmp_path: Path) -> None:
    rendered = render(set_values=["webMap.enabled=true"])
    pod, container = rendered.component("webmap")
    assert container["args"] == ["serve", "--host", "0.0.0.0", "--port", "8080", "--refresh", "30"]
    command = parsed(rendered.one("Deployment", "callmap-webmap"), pod, container, tmp_path)
    assert command.params["token_file"] is None and command.params["global_edges"] is False
    assert not [v for v in pod["volumes"] if v["name"] == "webmap-token"]


def test_the_capture_agent_reads_the_hosts_proc_where_it_is_mounted(chart: Rendered) -> None:
    _, container = chart.component("capture")
    command = parse_command(container["args"], container_env(container))
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "host-proc"]
    assert command.params["proc_root"] == mount["mountPath"]
    assert command.params["node"] == DOWNWARD["spec.nodeName"]  # from CALLMAP_NODE
    (port,) = container["ports"]
    assert command.params["metrics_port"] == port["containerPort"] == port["hostPort"]


def test_the_watcher_holds_the_lease_its_role_grants(chart: Rendered) -> None:
    pod, container = chart.component("watch")
    command = parse_command(container["args"], container_env(container))
    (role,) = chart.of_kind("Role")
    named = [rule for rule in role["rules"] if rule.get("resourceNames")]
    assert named[0]["resourceNames"] == [command.params["lease_name"]]
    assert command.params["lease_namespace"] == role["metadata"]["namespace"] == chart.namespace
    assert command.params["identity"] == DOWNWARD["metadata.name"]  # CALLMAP_POD_NAME
    assert command.params["in_cluster"] is True and pod["automountServiceAccountToken"] is True


def test_metrics_ports_are_the_ports_the_commands_serve(chart: Rendered, tmp_path: Path) -> None:
    served = 0
    for document, pod, container in each_container(chart):
        command = parsed(document, pod, container, tmp_path)
        if "metrics_port" in command.params:
            (port,) = [p for p in container["ports"] if p["name"] == "metrics"]
            assert command.params["metrics_port"] == port["containerPort"], container["name"]
            served += 1
    unserved = {"topics", "webmap"}  # the Job, and the web map (a page, no metrics)
    assert served == len([d for d, _ in chart.workloads() if component_of(d) not in unserved])


def test_every_callmap_variable_the_chart_sets_is_read_by_callmap(
    chart: Rendered, tmp_path: Path
) -> None:
    read_by_settings = settings_variables() | {METRICS_ADDRESS_VARIABLE}
    for document, pod, container in each_container(chart):
        command = parsed(document, pod, container, tmp_path)
        unread = set(container_env(container)) - read_by_settings - command.envvars
        assert not unread, f"{document['metadata']['name']} sets variables nothing reads: {unread}"


def test_the_kafka_settings_of_every_pod_load(chart: Rendered, tmp_path: Path) -> None:
    for document, pod in chart.workloads():
        for container in pod["containers"]:
            files = kubernetes_file_system(tmp_path / document["metadata"]["name"], pod, container)
            env = {name: files.translate(value) for name, value in container_env(container).items()}
            settings = load_settings(env)
            assert settings.cluster == env["CALLMAP_CLUSTER"]
            if settings.kafka.security_protocol.startswith("SASL_"):
                assert settings.kafka.sasl_username == "placeholder"  # read from the Secret's file


def test_everything_reaches_the_commands(everything_chart: Rendered) -> None:
    def params(component: str) -> dict[str, object]:
        _, container = everything_chart.component(component)
        return parse_command(container["args"], container_env(container)).params

    assert params("streams")["excluded"] == ("kube-system", "monitoring")
    assert params("capture")["interfaces"] == ("eth0", "cni0")
    assert params("watch")["label_keys"] == ("app", "team/")
    assert params("watch")["heartbeat"] == 15.0
    assert params("aggregate")["grace"] == 30.0
    assert params("sink-ocsf")["topic"] == "siem.ocsf.network"


@pytest.mark.parametrize("sockets", [True, False])
def test_socket_scans_follow_the_value(helm: Path, sockets: bool) -> None:
    rendered = render(set_values=[f"capture.sockets={str(sockets).lower()}"])
    _, container = rendered.component("capture")
    assert container["args"][:2] == ["capture", "run" if sockets else "dns"]


def test_every_component_serves_metrics_on_its_pods_ip_only(chart: Rendered) -> None:
    for _, _, container in each_container(chart):
        env = container_env(container)
        assert env[METRICS_ADDRESS_VARIABLE] == DOWNWARD["status.podIP"], container["name"]
