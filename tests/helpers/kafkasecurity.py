"""A broker that authenticates and enforces ACLs, with certificates made here.

Every component gets a principal of its own name: a SCRAM-SHA-512 user with a
random password, and a client certificate whose CN is that name, signed by a
certificate authority made for the test; each is granted the component's
ACLs from :mod:`callmap.acls`, nothing else. The aggregator's are those of a
hub that MirrorMaker 2 copies cluster ``east`` into (:data:`MIRRORED`).
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from callmap.acls import COMPONENTS, component_acls
from devtools.kafka import DevBroker, SecureListeners
from devtools.kafkaacl import grant
from devtools.process import free_port

MIRRORED = ("east",)
"""The clusters whose copies the aggregator principal may read."""


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(directory: Path, clients: tuple[str, ...]) -> None:
    """``ca.pem``; ``server.pem`` (PKCS#8 key and certificate for 127.0.0.1); and
    ``<client>.crt`` and ``<client>.key`` for each client, its CN the client's name."""
    d = directory
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca = str(d / "ca.key"), str(d / "ca.pem")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", ca_key, "-out", ca, "-subj", "/CN=callmap test CA")  # fmt: skip
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, extra in (("server", ["-extfile", str(d / "san.cnf")]), *((c, []) for c in clients)):
        cn = "localhost" if name == "server" else name
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / f"{name}.key"),
                 "-out", str(d / f"{name}.csr"), "-subj", f"/CN={cn}")  # fmt: skip
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
                 "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
                 "-out", str(d / f"{name}.crt"), *extra)  # fmt: skip
    _openssl("pkcs8", "-topk8", "-nocrypt", "-in", str(d / "server.key"),
             "-out", str(d / "server.p8"))  # fmt: skip
    (d / "server.pem").write_text((d / "server.p8").read_text() + (d / "server.crt").read_text())


@dataclass(frozen=True)
class SecureBroker:
    broker: DevBroker
    listeners: SecureListeners
    certificates: Path
    passwords: dict[str, str]

    def scram(self, component: str, password: str | None = None) -> dict[str, str]:
        """CALLMAP_* settings of ``component`` over SASL_SSL with its SCRAM user."""
        return {
            "CALLMAP_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.listeners.sasl_port}",
            "CALLMAP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CALLMAP_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "CALLMAP_KAFKA_SASL_USERNAME": component,
            "CALLMAP_KAFKA_SASL_PASSWORD": password or self.passwords[component],
            "CALLMAP_KAFKA_SSL_CAFILE": str(self.certificates / "ca.pem"),
        }

    def mtls(self, component: str) -> dict[str, str]:
        """CALLMAP_* settings of ``component`` over SSL with its client certificate."""
        return {
            "CALLMAP_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.listeners.ssl_port}",
            "CALLMAP_KAFKA_SECURITY_PROTOCOL": "SSL",
            "CALLMAP_KAFKA_SSL_CAFILE": str(self.certificates / "ca.pem"),
            "CALLMAP_KAFKA_SSL_CERTFILE": str(self.certificates / f"{component}.crt"),
            "CALLMAP_KAFKA_SSL_KEYFILE": str(self.certificates / f"{component}.key"),
        }


@contextmanager
def secure_broker(directory: Path, app_id: str) -> Iterator[SecureBroker]:
    """A broker with SASL_SSL and mTLS listeners, each component granted its ACLs."""
    certificates = directory / "certificates"
    make_certificates(certificates, COMPONENTS)
    passwords = {component: secrets.token_hex(12) for component in COMPONENTS}
    ports: set[int] = set()
    while len(ports) < 3:  # each free a moment ago, and different
        ports.add(free_port())
    port, sasl_port, ssl_port = sorted(ports)
    listeners = SecureListeners(
        sasl_port=sasl_port,
        ssl_port=ssl_port,
        keystore=certificates / "server.pem",
        truststore=certificates / "ca.pem",
        scram_users=tuple(passwords.items()),
    )
    broker = DevBroker(directory / "kafka", port=port, secure=listeners)
    broker.start()
    try:
        grant(
            broker,
            {
                f"User:{component}": component_acls(component, app_id=app_id, aliases=MIRRORED)
                for component in COMPONENTS
            },
        )
        yield SecureBroker(broker, listeners, certificates, passwords)
    finally:
        broker.stop()
