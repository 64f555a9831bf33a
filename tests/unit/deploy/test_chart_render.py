"""The chart renders, refuses bad values, and its objects fit together.

Fitting together: selectors select the pods they are meant to, Services name
ports the pods have, the NetworkPolicies open what each component talks to
and nothing else, and deploy/manifests/ is the chart rendered with defaults.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.chartrender import CHART, EVERYTHING, ROOT, Rendered, render

from devtools import helm as devhelm

COMPONENT = "app.kubernetes.io/component"


def pod_labels(chart: Rendered) -> list[dict[str, str]]:
    return [document["spec"]["template"]["metadata"]["labels"] for document, _ in chart.workloads()]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector's verdict on ``labels`` (matchLabels and the operators the chart uses)."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        value, operator = labels.get(expression["key"]), expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
    return True


def components(chart: Rendered, selector: dict[str, Any]) -> set[str]:
    return {
        labels["app.kubernetes.io/component"]
        for labels in pod_labels(chart)
        if selects(selector, labels)
    }


def test_the_chart_lints_strictly_with_defaults_and_with_everything(helm: Path) -> None:
    devhelm.lint(CHART)
    devhelm.lint(CHART, values=[EVERYTHING])


def test_the_shipped_manifests_are_the_chart_rendered_with_defaults(helm: Path) -> None:
    shipped = (ROOT / devhelm.MANIFESTS).read_text()
    assert shipped == devhelm.render_manifests(ROOT), "run `callmap dev helm manifests`"


def test_defaults_run_every_component(default_chart: Rendered) -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in default_chart.documents}
    assert {
        ("DaemonSet", "callmap-capture"),
        ("Deployment", "callmap-watch"),
        ("Deployment", "callmap-streams"),
        ("Deployment", "callmap-sink-sqlite"),
        ("PodDisruptionBudget", "callmap-streams"),
        ("Job", "callmap-topics"),
    } <= kinds
    assert not default_chart.of_kind("ServiceMonitor")  # needs the Prometheus Operator


def test_every_object_is_named_once_and_labelled_as_callmaps(chart: Rendered) -> None:
    keys = [(d["kind"], d["metadata"]["name"]) for d in chart.documents]
    assert len(keys) == len(set(keys))
    for document in chart.documents:
        labels = document["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "callmap", document["metadata"]["name"]
        if document["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert document["metadata"]["namespace"] == chart.namespace


def test_each_workload_selects_exactly_its_own_pods(chart: Rendered) -> None:
    for document, _ in chart.workloads():
        if document["kind"] == "Job":
            continue
        selector = document["spec"]["selector"]
        own = document["metadata"]["labels"]["app.kubernetes.io/component"]
        assert components(chart, selector) == {own}


def test_the_stream_app_runs_two_workers_and_a_budget_keeps_one(default_chart: Rendered) -> None:
    streams = default_chart.one("Deployment", "callmap-streams")
    budget = default_chart.one("PodDisruptionBudget", "callmap-streams")
    assert streams["spec"]["replicas"] == 2 and budget["spec"]["maxUnavailable"] == 1
    assert components(default_chart, budget["spec"]["selector"]) == {"streams"}


def test_two_watchers_are_spread_over_nodes(default_chart: Rendered) -> None:
    watch = default_chart.one("Deployment", "callmap-watch")
    assert watch["spec"]["replicas"] == 2
    anti = watch["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert components(default_chart, term["labelSelector"]) == {"watch"}


def test_file_sinks_have_one_writer_and_keep_their_claim(everything_chart: Rendered) -> None:
    for kind in ("sqlite", "jsonl", "ocsf"):
        sink = everything_chart.one("Deployment", f"prod-callmap-sink-{kind}")
        if kind == "ocsf":  # to a topic in values-everything: no files
            assert sink["spec"]["strategy"]["type"] == "RollingUpdate"
            continue
        assert sink["spec"]["replicas"] == 1 and sink["spec"]["strategy"]["type"] == "Recreate"
    claim = everything_chart.one("PersistentVolumeClaim", "prod-callmap-sink-jsonl")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["storageClassName"] == "fast"
    postgres = everything_chart.one("Deployment", "prod-callmap-sink-postgres")
    assert postgres["spec"]["replicas"] == 2


def test_the_topics_job_runs_after_every_install_and_upgrade(default_chart: Rendered) -> None:
    job = default_chart.one("Job", "callmap-topics")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["topics", "create"]


def test_metrics_services_name_ports_their_pods_serve(chart: Rendered) -> None:
    services = [s for s in chart.of_kind("Service") if s["metadata"]["name"].endswith("-metrics")]
    unserved = {"topics", "webmap"}  # the Job, and the web map (a page, no metrics)
    assert len(services) == len([d for d in pod_labels(chart) if d[COMPONENT] not in unserved])
    for service in services:
        (port,) = service["spec"]["ports"]
        selected = [
            pod
            for document, pod in chart.workloads()
            if selects(
                {"matchLabels": service["spec"]["selector"]},
                document["spec"]["template"]["metadata"]["labels"],
            )
        ]
        assert len(selected) == 1, service["metadata"]["name"]
        served = {p["name"]: p["containerPort"] for p in selected[0]["containers"][0]["ports"]}
        assert served[port["targetPort"]] == port["port"]


def test_the_service_monitor_scrapes_every_metrics_service(everything_chart: Rendered) -> None:
    (monitor,) = everything_chart.of_kind("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selector = monitor["spec"]["selector"]
    scraped = [
        s for s in everything_chart.of_kind("Service") if selects(selector, s["metadata"]["labels"])
    ]
    assert len(scraped) == 10  # capture, watch, streams, aggregate, servicegraph, five sinks
    assert not [s for s in scraped if s["metadata"]["labels"][COMPONENT] == "webmap"]
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "15s"}
    ]


def test_the_web_map_is_off_by_default_and_renders_nothing(default_chart: Rendered) -> None:
    assert not [
        d for d in default_chart.documents if d["metadata"]["labels"][COMPONENT] == "webmap"
    ]


def test_the_web_maps_service_reaches_its_page(everything_chart: Rendered) -> None:
    service = everything_chart.one("Service", "prod-callmap-webmap")
    assert service["spec"]["type"] == "NodePort"
    (port,) = service["spec"]["ports"]
    assert port == {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    assert components(everything_chart, {"matchLabels": service["spec"]["selector"]}) == {"webmap"}
    _, container = everything_chart.component("webmap")
    served = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert served == {"http": 18080}


def test_the_web_maps_service_defaults_to_the_cluster_only(helm: Path) -> None:
    service = render(set_values=["webMap.enabled=true"]).one("Service", "callmap-webmap")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["port"] == 80


def kafka_secrets(pod_spec: dict[str, Any]) -> dict[str, str]:
    return {
        v["name"]: v["secret"]["secretName"]
        for v in pod_spec["volumes"]
        if v["name"] in ("kafka-sasl", "kafka-client")
    }


def test_each_component_may_have_its_own_kafka_principal(everything_chart: Rendered) -> None:
    specs = {
        w["metadata"]["name"]: w["spec"]["template"]["spec"]
        for kind in ("DaemonSet", "Deployment", "StatefulSet")
        for w in everything_chart.of_kind(kind)
    }
    by_name = {name.removeprefix("prod-callmap-"): kafka_secrets(s) for name, s in specs.items()}
    assert by_name["capture"] == {
        "kafka-sasl": "kafka-user-capture",
        "kafka-client": "kafka-client-capture",
    }
    assert by_name["streams"] == {"kafka-sasl": "kafka-user", "kafka-client": "kafka-client-tls"}
    sinks = [secrets for name, secrets in by_name.items() if name.startswith("sink-")]
    assert sinks and all(s["kafka-sasl"] == "kafka-user-sinks" for s in sinks)
    # The map readers log in as themselves: they read the edges and identities, no group.
    assert by_name["servicegraph"]["kafka-sasl"] == by_name["webmap"]["kafka-sasl"]
    assert by_name["webmap"]["kafka-sasl"] == "kafka-user-map"


def egress_ports(policy: dict[str, Any]) -> set[tuple[object, str]]:
    return {
        (port["port"], port["protocol"])
        for rule in policy["spec"].get("egress", [])
        for port in rule.get("ports", [])
    }


def test_network_policies_isolate_every_pod_but_the_host_network_agent(
    chart: Rendered,
) -> None:
    base = next(
        p
        for p in chart.of_kind("NetworkPolicy")
        if "base" in p["metadata"]["labels"]["app.kubernetes.io/component"]
    )
    isolated = components(chart, base["spec"]["podSelector"])
    every = {labels["app.kubernetes.io/component"] for labels in pod_labels(chart)}
    assert isolated == every - {"capture"}
    assert base["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = base["spec"]["ingress"]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]


def test_pods_may_reach_dns_and_the_kafka_ports_only(default_chart: Rendered) -> None:
    base = default_chart.one("NetworkPolicy", "callmap")
    assert egress_ports(base) == {(53, "UDP"), (53, "TCP"), (9092, "TCP")}
    watch = default_chart.one("NetworkPolicy", "callmap-watch")
    assert components(default_chart, watch["spec"]["podSelector"]) == {"watch"}
    assert egress_ports(watch) == {(443, "TCP"), (6443, "TCP")}


def test_narrowed_policies_name_their_peers_and_each_sinks_target(
    everything_chart: Rendered,
) -> None:
    base = everything_chart.one("NetworkPolicy", "prod-callmap")
    dns, kafka, extra = base["spec"]["egress"]
    assert {(p["port"], p["protocol"]) for p in kafka["ports"]} == {(9093, "TCP"), (9094, "TCP")}
    assert kafka["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert extra["ports"] == [{"port": 8443, "protocol": "TCP"}]
    assert base["spec"]["ingress"][0]["from"][0]["namespaceSelector"]
    postgres = everything_chart.one("NetworkPolicy", "prod-callmap-sink-postgres")
    syslog = everything_chart.one("NetworkPolicy", "prod-callmap-sink-syslog")
    assert egress_ports(postgres) == {(6432, "TCP")} and egress_ports(syslog) == {(6514, "TCP")}


def policies_of(chart: Rendered, component: str) -> list[dict[str, Any]]:
    """The NetworkPolicies that select ``component``'s pods."""
    (labels,) = [labels for labels in pod_labels(chart) if labels[COMPONENT] == component]
    return [p for p in chart.of_kind("NetworkPolicy") if selects(p["spec"]["podSelector"], labels)]


def test_the_web_map_is_reached_on_its_page_only_and_reaches_dns_and_kafka_only(
    everything_chart: Rendered,
) -> None:
    _, container = everything_chart.component("webmap")
    named = {port["name"] for port in container["ports"]}
    policies = policies_of(everything_chart, "webmap")
    base = everything_chart.one("NetworkPolicy", "prod-callmap")
    own = everything_chart.one("NetworkPolicy", "prod-callmap-webmap")
    assert {p["metadata"]["name"] for p in policies} == {"prod-callmap", "prod-callmap-webmap"}
    opened = {
        port["port"]
        for policy in policies
        for rule in policy["spec"].get("ingress", [])
        for port in rule["ports"]
    }
    assert opened & named == {"http"}  # the base policy's "metrics" names no port of this pod
    assert own["spec"]["policyTypes"] == ["Ingress"] and "egress" not in own["spec"]
    (ingress,) = own["spec"]["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert ingress["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]
    # Egress is the base policy's alone: DNS, Kafka (and the values' extraEgress).
    allowed = set().union(*(egress_ports(policy) for policy in policies))
    assert (
        allowed
        == egress_ports(base)
        == {
            (53, "UDP"),
            (53, "TCP"),
            (9093, "TCP"),
            (9094, "TCP"),
            (8443, "TCP"),
        }
    )


def test_anyone_may_open_the_web_map_unless_the_values_narrow_it(helm: Path) -> None:
    rendered = render(set_values=["webMap.enabled=true"])
    (ingress,) = rendered.one("NetworkPolicy", "callmap-webmap")["spec"]["ingress"]
    assert "from" not in ingress
    off = render(set_values=["webMap.enabled=true", "networkPolicy.enabled=false"])
    assert not off.of_kind("NetworkPolicy")


@pytest.mark.parametrize(
    ("target", "port"),
    [
        ("udp://siem.example", (514, "UDP")),
        ("tcp://siem.example", (601, "TCP")),
        ("tls://[::1]", (6514, "TCP")),
    ],
)
def test_a_syslog_target_without_a_port_opens_its_schemes_default(
    helm: Path, target: str, port: tuple[int, str]
) -> None:
    rendered = render(set_values=["sinks.syslog.enabled=true", f"sinks.syslog.target={target}"])
    assert egress_ports(rendered.one("NetworkPolicy", "callmap-sink-syslog")) == {port}


@pytest.mark.parametrize(
    ("assignment", "complaint"),
    [
        ("capture.socket=false", "additional properties 'socket' not allowed"),  # a typo
        ("kafka.securityProtocol=TLS", "at '/kafka/securityProtocol'"),
        ("kafka.bootstrapServers=kafka", "at '/kafka/bootstrapServers'"),  # no port
        ("logLevel=verbose", "at '/logLevel'"),
        ("watch.replicas=0", "at '/watch/replicas'"),
        ("image.digest=latest", "at '/image/digest'"),
        ("webMap.port=http", "at '/webMap/port'"),
        ("webMap.service.type=Ingress", "at '/webMap/service/type'"),
        ("webMap.token.value=s3cret", "additional properties 'value' not allowed"),
    ],
)
def test_values_that_make_no_sense_are_refused_by_the_schema(
    helm: Path, assignment: str, complaint: str
) -> None:
    with pytest.raises(devhelm.DevHelmError) as refused:
        render(set_values=[assignment])
    assert complaint in str(refused.value)


def test_sasl_without_its_secret_is_refused_with_a_reason(helm: Path) -> None:
    with pytest.raises(devhelm.DevHelmError) as refused:
        render(set_values=["kafka.securityProtocol=SASL_SSL"])
    assert "needs kafka.sasl.secret" in str(refused.value)


def test_the_postgres_sink_without_its_dsn_is_refused(helm: Path) -> None:
    with pytest.raises(devhelm.DevHelmError) as refused:
        render(set_values=["sinks.postgres.enabled=true"])
    assert "sinks.postgres.dsnSecret is required" in str(refused.value)


def test_an_image_digest_wins_over_the_tag(everything_chart: Rendered) -> None:
    for _, pod in everything_chart.workloads():
        image = pod["containers"][0]["image"]
        assert image == "registry.example/platform/callmap@sha256:" + "0123456789abcdef" * 4
        assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]


def test_the_default_image_tag_is_the_release_pyproject_builds() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert chart["appVersion"] == pyproject["project"]["version"]
