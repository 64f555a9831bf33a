"""Least privilege, as rendered: what each pod may do, and why the capture agent may do more.

The capture agent is the one exception to "non-root, no capabilities, no host
access": root with NET_RAW (and SETUID and SETGID to give root up once its
sockets are open; never SYS_PTRACE), the host's network and its /proc
read-only. Sizes come from the benchmarks quoted in
values.yaml and docs/deploy.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers.chartrender import CHART, ROOT, Rendered, render

from devtools.helm import DevHelmError

MIB = 1024 * 1024
UNITS = {"Ki": 1024, "Mi": MIB, "Gi": 1024 * MIB}


def quantity(value: str) -> float:
    """A Kubernetes quantity in bytes or cores."""
    for suffix, factor in UNITS.items():
        if value.endswith(suffix):
            return float(value.removesuffix(suffix)) * factor
    if value.endswith("m"):
        return float(value.removesuffix("m")) / 1000
    return float(value)


def capture(chart: Rendered) -> tuple[dict[str, Any], dict[str, Any]]:
    return chart.component("capture")


def test_the_capture_agent_is_root_with_only_the_capabilities_it_uses(
    default_chart: Rendered,
) -> None:
    _, container = capture(default_chart)
    context = container["securityContext"]
    assert context["runAsUser"] == 0 and context["privileged"] is False
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    added = ["NET_RAW", "SETUID", "SETGID", "NET_ADMIN"]  # NET_ADMIN: connection tracking
    assert context["capabilities"] == {"drop": ["ALL"], "add": added}
    assert "--conntrack" in container["args"]


@pytest.mark.parametrize(
    ("values", "added"),
    [
        (["capture.dropTo=null", "capture.conntrack=false"], ["NET_RAW"]),
        (["capture.conntrack=false"], ["NET_RAW", "SETUID", "SETGID"]),
        (["capture.sockets=false"], ["NET_RAW", "SETUID", "SETGID"]),
        (
            ["capture.conntrack=false", "capture.forceReceiveBuffer=true"],
            ["NET_RAW", "SETUID", "SETGID", "NET_ADMIN"],
        ),
        (
            ["capture.dropTo=null", "capture.tcpInfo=true"],
            ["NET_RAW", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"],
        ),
        (["capture.dropTo=null", "capture.tcpInfo=true", "capture.sockets=false"], ["NET_RAW"]),
    ],
)
def test_each_extra_capability_comes_only_with_the_feature_that_needs_it(
    helm: Path, values: list[str], added: list[str]
) -> None:
    _, container = capture(render(set_values=values))
    assert container["securityContext"]["capabilities"]["add"] == added


def test_the_capture_agent_sees_the_node_through_its_network_and_a_read_only_proc(
    chart: Rendered,
) -> None:
    pod, container = capture(chart)
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert not pod.get("hostPID") and not pod.get("hostIPC")
    host_paths = {v["name"]: v["hostPath"] for v in pod["volumes"] if "hostPath" in v}
    assert host_paths == {"host-proc": {"path": "/proc", "type": "Directory"}}
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "host-proc"]
    assert mount == {"name": "host-proc", "mountPath": "/host/proc", "readOnly": True}
    assert pod["automountServiceAccountToken"] is False


def test_the_capture_agent_gives_root_up_once_its_sockets_are_open(chart: Rendered) -> None:
    pod, container = capture(chart)
    args = container["args"]
    assert args[args.index("--drop-to") + 1] == "10002:10002"
    assert pod["securityContext"]["fsGroup"] == 10002  # Kafka's files stay readable to it


def test_the_capture_agent_runs_on_every_node(chart: Rendered) -> None:
    pod, _ = capture(chart)
    assert {"operator": "Exists"} in pod["tolerations"]  # tainted nodes too
    (daemonset,) = chart.of_kind("DaemonSet")
    assert daemonset["spec"]["updateStrategy"]["type"] == "RollingUpdate"


def test_capture_resources_cover_the_measured_load_and_the_outbox(chart: Rendered) -> None:
    _, container = capture(chart)
    resources = container["resources"]
    outbox = int(container["args"][container["args"].index("--outbox-mib") + 1]) * MIB
    # 183 MB peak RSS at 94,919 answers/s that never fold, the worst case measured at
    # its highest lossless rate (docs/capture.md); the outbox fills while Kafka is away.
    assert quantity(resources["limits"]["memory"]) >= 183e6 + outbox
    # 27 % of a core at 22,500 such answers/s: room for three times that.
    assert quantity(resources["limits"]["cpu"]) >= 3 * 0.27
    assert quantity(resources["requests"]["memory"]) <= quantity(resources["limits"]["memory"])


def test_the_watcher_fits_a_hundred_thousand_pods(default_chart: Rendered) -> None:
    _, container = default_chart.component("watch")
    memory = container["resources"]
    assert quantity(memory["requests"]["memory"]) >= 174e6  # peak RSS, 100,000 pods
    assert quantity(memory["limits"]["memory"]) >= 2 * 174e6  # room for a relist


def test_every_pod_has_probes_on_its_metrics_port(chart: Rendered) -> None:
    for document, pod in chart.workloads():
        if document["kind"] == "Job" or document["metadata"]["name"].endswith("-webmap"):
            continue
        (container,) = pod["containers"]
        # Liveness asks /healthz, which fails while a part of the process has stopped.
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}


def test_the_web_map_is_ready_once_it_has_read_the_map(everything_chart: Rendered) -> None:
    _, container = everything_chart.component("webmap")
    # /healthz needs no token and fails until the topic is read; a long first read
    # must not get the pod killed, so liveness only asks whether the port is open.
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["livenessProbe"]["tcpSocket"] == {"port": "http"}
    assert [port["name"] for port in container["ports"]] == ["http"]


def test_the_web_maps_token_is_a_mounted_secret_never_a_value(
    everything_chart: Rendered, helm: Path
) -> None:
    pod, container = everything_chart.component("webmap")
    (volume,) = [v for v in pod["volumes"] if v["name"] == "webmap-token"]
    assert volume["secret"]["secretName"] == "callmap-webmap-token"
    assert volume["secret"]["items"] == [{"key": "bearer", "path": "token"}]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "webmap-token"]
    assert mount["readOnly"] is True
    args = container["args"]
    assert args[args.index("--token-file") + 1] == mount["mountPath"] + "/token"
    assert "CALLMAP_SERVE_TOKEN" not in {variable["name"] for variable in container["env"]}
    pod, container = render(set_values=["webMap.enabled=true"]).component("webmap")
    assert "--token-file" not in container["args"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert "CALLMAP_SERVE_TOKEN" not in {variable["name"] for variable in container["env"]}


def test_every_other_pod_runs_unprivileged(chart: Rendered) -> None:
    others = [(d, p) for d, p in chart.workloads() if d["kind"] != "DaemonSet"]
    assert len(others) >= 4
    for document, pod in others:
        name = document["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not any(pod.get(key) for key in ("hostNetwork", "hostPID", "hostIPC")), name
        assert not any("hostPath" in volume for volume in pod["volumes"]), name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["runAsUser"] == 10001 and context["runAsNonRoot"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name


def test_only_the_watcher_gets_a_service_account_token(chart: Rendered) -> None:
    tokens = {
        document["metadata"]["labels"]["app.kubernetes.io/component"]
        for document, pod in chart.workloads()
        if pod["automountServiceAccountToken"]
    }
    assert tokens == {"watch"}
    for account in chart.of_kind("ServiceAccount"):
        assert account["automountServiceAccountToken"] is False
    bound = {
        subject["name"]
        for binding in chart.of_kind("RoleBinding") + chart.of_kind("ClusterRoleBinding")
        for subject in binding["subjects"]
    }
    (watch_pod, _) = chart.component("watch")
    assert bound == {watch_pod["serviceAccountName"]}


def test_secrets_reach_pods_as_files_never_as_values(everything_chart: Rendered) -> None:
    for _, pod in everything_chart.workloads():
        for container in pod["containers"]:
            for variable in container["env"]:
                name = variable["name"]
                if any(word in name for word in ("PASSWORD", "USERNAME", "DSN", "KEY")):
                    assert name.endswith(("_FILE", "_KEYFILE")), name
                    assert variable["value"].startswith("/var/run/secrets/callmap/"), name
                assert "secretKeyRef" not in variable.get("valueFrom", {}), name


def test_every_path_a_component_writes_is_a_volume(chart: Rendered) -> None:
    for document, pod in chart.workloads():
        (container,) = pod["containers"]
        mounted = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert "/tmp" in mounted, document["metadata"]["name"]
        if "workingDir" in container:  # Faust's data directory
            assert container["workingDir"] in mounted
        for arg in container["args"]:
            if arg.startswith("/var/lib/callmap"):
                assert "/var/lib/callmap" in mounted, document["metadata"]["name"]


def test_tcp_info_is_only_for_an_agent_that_keeps_its_capabilities(helm: Path) -> None:
    _, container = capture(render(set_values=["capture.dropTo=null", "capture.tcpInfo=true"]))
    assert "--tcp-info" in container["args"]
    assert "--no-tcp-info" in capture(render())[1]["args"]
    with pytest.raises(DevHelmError, match=r"capture\.tcpInfo needs capture\.dropTo: null"):
        render(set_values=["capture.tcpInfo=true"])


def test_every_capability_the_agent_can_get_has_a_written_reason(helm: Path) -> None:
    possible: set[str] = set()
    for values in (
        ["capture.forceReceiveBuffer=true"],
        ["capture.dropTo=null", "capture.tcpInfo=true"],
    ):
        _, container = capture(render(set_values=values))
        possible |= set(container["securityContext"]["capabilities"]["add"])
    assert possible == {"NET_RAW", "SETUID", "SETGID", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"}
    rows = (ROOT / "docs" / "deploy.md").read_text().splitlines()
    template = (CHART / "templates" / "capture.yaml").read_text()
    for capability in possible:
        # a row of the Privileges table names it first
        assert any(
            line.startswith("| `CAP_") and f"`CAP_{capability}`" in line.split("|")[1]
            for line in rows
        ), capability
        assert f"  {capability} " in template, capability  # and the template says why
