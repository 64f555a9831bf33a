"""A small synchronous client of the lab's own Kubernetes API server.

The lab writes a few hundred objects at most, from plain (synchronous) code:
``http.client`` over one kept-alive TLS connection, authenticated with the
API server's admin client certificate, is all it takes. JSON in, JSON out.

Errors stop here: a refusal of the API server (4xx) is a :class:`KubeApiError`
carrying its status code and the server's message; what may pass (the
connection dropped, a 429 or a 5xx) is retried with a doubling backoff a few
times before it becomes one.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from lab.errors import LabError

MERGE_PATCH = "application/merge-patch+json"
_ATTEMPTS = 6
_FIRST_BACKOFF = 0.25


class KubeApiError(LabError):
    """The API server refused a request, or could not be reached; ``status`` 0 for the latter."""

    def __init__(self, action: str, status: int, message: str) -> None:
        super().__init__(
            f"{action}: HTTP {status}: {message}" if status else f"{action}: {message}"
        )
        self.status = status


class KubeClient:
    """Requests to one API server as its admin (``system:masters``)."""

    def __init__(self, server: str, ca: Path, cert: Path, key: Path, timeout: float = 30.0) -> None:
        parts = urlsplit(server)
        if parts.scheme != "https" or parts.hostname is None:
            raise LabError(f"not an https API server URL: {server!r}")
        self.server = server
        self._host, self._port = parts.hostname, parts.port or 443
        self._context = ssl.create_default_context(cafile=str(ca))
        self._context.load_cert_chain(str(cert), str(key))
        self._timeout = timeout
        self._connection: http.client.HTTPSConnection | None = None

    @classmethod
    def for_pki(cls, server: str, pki: Path) -> KubeClient:
        """A client with the admin certificate of a :class:`~devtools.kube.DevKube` instance."""
        return cls(server, pki / "ca.crt", pki / "admin.crt", pki / "admin.key")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str) -> dict[str, Any]:
        return self.request("GET", path)

    def create(self, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", collection, body)

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", path, patch, content_type=MERGE_PATCH)

    def delete(self, path: str, grace_seconds: int | None = None) -> dict[str, Any]:
        query = {} if grace_seconds is None else {"gracePeriodSeconds": grace_seconds}
        return self.request("DELETE", path, query=query)

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        content_type: str = "application/json",
        query: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send one request; the decoded answer, or KubeApiError once retries are spent."""
        target = path + (f"?{urlencode(query)}" if query else "")
        action = f"{method} {path}"
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = content_type
        delay = _FIRST_BACKOFF
        for attempt in range(_ATTEMPTS):
            try:
                status, data = self._send(method, target, payload, headers)
            except (OSError, http.client.HTTPException) as exc:
                self.close()  # a dropped keep-alive connection: open a new one
                status, data = 0, f"API server unreachable: {exc!r}".encode()
            if 200 <= status < 300:
                answer = json.loads(data) if data else {}
                return answer if isinstance(answer, dict) else {}
            if (status not in (0, 429) and status < 500) or attempt == _ATTEMPTS - 1:
                raise KubeApiError(action, status, _message(data))
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # the loop returns or raises

    def _send(
        self, method: str, target: str, payload: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        if self._connection is None:
            self._connection = http.client.HTTPSConnection(
                self._host, self._port, context=self._context, timeout=self._timeout
            )
        self._connection.request(method, target, body=payload, headers=headers)
        response = self._connection.getresponse()
        return response.status, response.read()


def _message(data: bytes) -> str:
    """The ``message`` of a Status answer, else the start of the body."""
    text = data.decode(errors="replace")
    try:
        status = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    return text[:300]
