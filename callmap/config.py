"""Settings shared by every callmap process, read from the environment.

Each setting is a field of a small frozen dataclass with one docstring saying
what it is for; :func:`load_settings` builds them from ``CALLMAP_*`` variables
(the Helm chart and docker-compose set those). Secrets can come from files
(``..._FILE`` variables), as Kubernetes Secrets are usually mounted.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callmap.errors import ConfigError
from callmap.wire.topics import ALL_TOPICS, TopicSpec

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """How to reach the Kafka cluster."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    """Comma-separated host:port list (``CALLMAP_KAFKA_BOOTSTRAP``)."""
    security_protocol: str = "PLAINTEXT"
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (``CALLMAP_KAFKA_SECURITY_PROTOCOL``)."""
    sasl_mechanism: str | None = None
    """PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (``CALLMAP_KAFKA_SASL_MECHANISM``)."""
    sasl_username: str | None = None
    """SASL user (``CALLMAP_KAFKA_SASL_USERNAME`` or ``..._FILE``)."""
    sasl_password: str | None = field(default=None, repr=False)
    """SASL password (``CALLMAP_KAFKA_SASL_PASSWORD`` or ``..._FILE``); never logged."""
    ssl_cafile: str | None = None
    """CA bundle that signs the brokers' certificates (``CALLMAP_KAFKA_SSL_CAFILE``)."""
    ssl_certfile: str | None = None
    """Client certificate for mutual TLS (``CALLMAP_KAFKA_SSL_CERTFILE``)."""
    ssl_keyfile: str | None = None
    """Private key of the client certificate (``CALLMAP_KAFKA_SSL_KEYFILE``)."""
    client_id: str = "callmap"
    """Client id the brokers see in their logs and quotas (``CALLMAP_KAFKA_CLIENT_ID``)."""

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments common to aiokafka's producer, consumer and admin client."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            kwargs["ssl_context"] = self.ssl_context()
        if self.security_protocol.startswith("SASL_"):
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context


@dataclass(frozen=True, slots=True)
class TopicSettings:
    """How callmap's topics are created when it creates them."""

    partitions: Mapping[str, int] = field(default_factory=dict)
    """Partition count per topic name, overriding the contract's defaults
    (``CALLMAP_TOPIC_PARTITIONS``: ``12`` for all, or ``callmap.dns.v1=24,...``)."""
    replication: int | None = None
    """Replication factor; None means three, or the number of brokers if fewer
    (``CALLMAP_TOPIC_REPLICATION``)."""

    def partitions_for(self, spec: TopicSpec) -> int:
        return self.partitions.get(spec.name, self.partitions.get("*", spec.partitions))


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a callmap process needs to know about its surroundings."""

    cluster: str = "default"
    """This cluster's name, stamped on every record (``CALLMAP_CLUSTER``)."""
    cluster_domain: str = "cluster.local"
    """The cluster DNS domain (``CALLMAP_CLUSTER_DOMAIN``)."""
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topics: TopicSettings = field(default_factory=TopicSettings)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    protocol = env.get("CALLMAP_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise ConfigError(
            f"CALLMAP_KAFKA_SECURITY_PROTOCOL={protocol!r}: expected one of {SECURITY_PROTOCOLS}"
        )
    mechanism = env.get("CALLMAP_KAFKA_SASL_MECHANISM")
    if protocol.startswith("SASL_"):
        mechanism = (mechanism or "PLAIN").upper()
        if mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"CALLMAP_KAFKA_SASL_MECHANISM={mechanism!r}: expected one of {SASL_MECHANISMS}"
            )
    kafka = KafkaSettings(
        bootstrap_servers=env.get("CALLMAP_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP),
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username=_secret(env, "CALLMAP_KAFKA_SASL_USERNAME"),
        sasl_password=_secret(env, "CALLMAP_KAFKA_SASL_PASSWORD"),
        ssl_cafile=env.get("CALLMAP_KAFKA_SSL_CAFILE"),
        ssl_certfile=env.get("CALLMAP_KAFKA_SSL_CERTFILE"),
        ssl_keyfile=env.get("CALLMAP_KAFKA_SSL_KEYFILE"),
        client_id=env.get("CALLMAP_KAFKA_CLIENT_ID", "callmap"),
    )
    if protocol.startswith("SASL_") and not (kafka.sasl_username and kafka.sasl_password):
        raise ConfigError(f"{protocol} needs CALLMAP_KAFKA_SASL_USERNAME and ..._PASSWORD")
    topics = TopicSettings(
        partitions=_partitions(env.get("CALLMAP_TOPIC_PARTITIONS", "")),
        replication=_optional_int(env, "CALLMAP_TOPIC_REPLICATION"),
    )
    return Settings(
        cluster=env.get("CALLMAP_CLUSTER", "default"),
        cluster_domain=env.get("CALLMAP_CLUSTER_DOMAIN", "cluster.local").strip("."),
        kafka=kafka,
        topics=topics,
    )


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """A value from ``NAME``, or from the file that ``NAME_FILE`` points to."""
    if name in env:
        return env[name]
    path = env.get(f"{name}_FILE")
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{name}_FILE={path!r}: {exc.strerror}") from None


def _optional_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number") from None
    if value < 1:
        raise ConfigError(f"{name}={raw!r}: expected a number of at least 1")
    return value


def _partitions(raw: str) -> dict[str, int]:
    """Parse ``12`` (every topic) or ``callmap.dns.v1=24,callmap.edges.v1=6``."""
    raw = raw.strip()
    if not raw:
        return {}
    known = {spec.name for spec in ALL_TOPICS}
    result: dict[str, int] = {}
    for item in raw.split(","):
        name, sep, count = item.strip().rpartition("=")
        name = name.strip() if sep else "*"
        if name != "*" and name not in known:
            raise ConfigError(f"CALLMAP_TOPIC_PARTITIONS: unknown topic {name!r}")
        if not count.strip().isdigit() or int(count) < 1:
            raise ConfigError(f"CALLMAP_TOPIC_PARTITIONS: {item!r} needs a count of at least 1")
        result[name] = int(count)
    return result
