"""The development API server's certificates: a CA and what it signs, made once with openssl.

A CA, the API server's serving certificate, the admin's client certificate
(user ``callmap-admin`` in ``system:masters``), the certificate the API server
presents to kubelets, and a service-account signing key, in one directory.
The development cluster's nodes and controllers get theirs from the same CA
(:func:`ensure_certificate`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from callmap.errors import CallmapError

ADMIN_USER = "callmap-admin"


class CertificateError(CallmapError):
    """A certificate or key could not be made."""


_CA = "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign"
_SERVING_NAMES = (
    "IP:127.0.0.1, IP:10.96.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, "
    "DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local"
)
_CLIENT = "extendedKeyUsage = clientAuth"
KUBELET_CLIENT = "apiserver-kubelet-client"
"""The certificate the API server presents to kubelets (logs, exec), when it serves nodes."""


def _certificates(address: str) -> tuple[tuple[str, dict[str, str], str], ...]:
    """(file name, subject, extensions) of each certificate; the CA first, it signs the rest."""
    names = _SERVING_NAMES if address == "127.0.0.1" else f"IP:{address}, {_SERVING_NAMES}"
    return (
        ("ca", {"CN": "callmap-dev-ca"}, _CA),
        (
            "apiserver",
            {"CN": "kube-apiserver"},
            f"extendedKeyUsage = serverAuth\nsubjectAltName = {names}",
        ),
        ("admin", {"O": "system:masters", "CN": ADMIN_USER}, _CLIENT),
        (KUBELET_CLIENT, {"O": "system:masters", "CN": "kube-apiserver-kubelet-client"}, _CLIENT),
    )


def render_openssl_config(subject: dict[str, str], extensions: str) -> str:
    names = "\n".join(f"{key} = {value}" for key, value in subject.items())
    leaf = "" if "CA:TRUE" in extensions else "basicConstraints = critical, CA:FALSE\n"
    usage = "" if "keyUsage" in extensions else "keyUsage = critical, digitalSignature\n"
    return (
        f"[req]\ndistinguished_name = dn\nx509_extensions = ext\nprompt = no\n[dn]\n{names}\n"
        f"[ext]\n{leaf}{usage}{extensions}\n"
    )


def ensure_pki(pki: Path, address: str) -> None:
    """A CA, a serving and client certificates, a service-account key: made once."""
    pki.mkdir(parents=True, exist_ok=True)
    for name, subject, extensions in _certificates(address):
        ensure_certificate(pki, name, subject, extensions)
    if not (pki / "sa.pub").exists():
        signing = str(pki / "sa.key")
        _openssl(["genpkey", "-algorithm", "RSA", "-out", signing])  # 2048 bits by default
        _openssl(["pkey", "-in", signing, "-pubout", "-out", str(pki / "sa.pub")])


def ensure_certificate(
    pki: Path, name: str, subject: dict[str, str], extensions: str = _CLIENT
) -> tuple[Path, Path]:
    """``<name>.crt`` and ``<name>.key`` in ``pki``, signed by its CA (``ca`` signs itself); once.

    A client certificate by default: Kubernetes takes the user from ``CN`` and
    the groups from ``O``.
    """
    key, cert, config = (pki / f"{name}.{suffix}" for suffix in ("key", "crt", "cnf"))
    if not cert.exists():
        config.write_text(render_openssl_config(subject, extensions))
        signer = [] if name == "ca" else ["-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key")]
        request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", *signer]
        _openssl([*request, "-keyout", str(key), "-out", str(cert), "-config", str(config)])
    return cert, key


def _openssl(args: list[str]) -> None:
    try:
        result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CertificateError("the openssl command is needed to make certificates") from None
    if result.returncode != 0:
        raise CertificateError(f"openssl {args[0]} failed: {result.stderr.strip()}")
