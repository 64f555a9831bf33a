"""Settings come from CALLMAP_* variables; bad values are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from callmap.config import DEFAULT_BOOTSTRAP, load_settings
from callmap.errors import ConfigError


def test_defaults_reach_the_local_development_broker() -> None:
    settings = load_settings({})
    assert settings.kafka.bootstrap_servers == DEFAULT_BOOTSTRAP
    assert settings.cluster == "default"
    assert settings.cluster_domain == "cluster.local"
    assert settings.kafka.client_kwargs() == {
        "bootstrap_servers": DEFAULT_BOOTSTRAP,
        "security_protocol": "PLAINTEXT",
        "client_id": "callmap",
    }


def test_cluster_name_and_domain_are_read_and_the_domain_loses_its_dots() -> None:
    settings = load_settings(
        {"CALLMAP_CLUSTER": "prod-eu", "CALLMAP_CLUSTER_DOMAIN": ".corp.local."}
    )
    assert (settings.cluster, settings.cluster_domain) == ("prod-eu", "corp.local")


def test_sasl_credentials_may_come_from_mounted_secret_files(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    settings = load_settings(
        {
            "CALLMAP_KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
            "CALLMAP_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "CALLMAP_KAFKA_SASL_USERNAME": "callmap",
            "CALLMAP_KAFKA_SASL_PASSWORD_FILE": str(password),
        }
    )
    kwargs = settings.kafka.client_kwargs()
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_password"] == "s3cret"
    assert "s3cret" not in repr(settings)


def test_tls_builds_an_ssl_context() -> None:
    settings = load_settings({"CALLMAP_KAFKA_SECURITY_PROTOCOL": "SSL"})
    assert settings.kafka.client_kwargs()["ssl_context"].check_hostname


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"CALLMAP_KAFKA_SECURITY_PROTOCOL": "TLS"}, "CALLMAP_KAFKA_SECURITY_PROTOCOL"),
        (
            {
                "CALLMAP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "CALLMAP_KAFKA_SASL_MECHANISM": "GSSAPI",
            },
            "CALLMAP_KAFKA_SASL_MECHANISM",
        ),
        ({"CALLMAP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "CALLMAP_KAFKA_SASL_USERNAME"),
        (
            {"CALLMAP_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"},
            "CALLMAP_KAFKA_SASL_PASSWORD_FILE",
        ),
        ({"CALLMAP_TOPIC_REPLICATION": "three"}, "CALLMAP_TOPIC_REPLICATION"),
        ({"CALLMAP_TOPIC_REPLICATION": "0"}, "CALLMAP_TOPIC_REPLICATION"),
        ({"CALLMAP_TOPIC_PARTITIONS": "callmap.nope.v1=3"}, "CALLMAP_TOPIC_PARTITIONS"),
        ({"CALLMAP_TOPIC_PARTITIONS": "callmap.dns.v1=0"}, "CALLMAP_TOPIC_PARTITIONS"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(environ)


def test_partitions_for_all_topics_and_per_topic() -> None:
    topics = load_settings({"CALLMAP_TOPIC_PARTITIONS": "4, callmap.edges.v1=16"}).topics
    assert dict(topics.partitions) == {"*": 4, "callmap.edges.v1": 16}
