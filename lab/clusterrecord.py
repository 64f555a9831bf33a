"""What the API server held during a cluster run, recorded; and the record and call logs read back.

:class:`ApiRecorder` lists, then watches, Pods, Services, ReplicaSets, Jobs
and Nodes in every namespace, one thread per kind, over plain HTTPS
(``http.client``) with the kubeconfig's client certificate. Every version
goes to a JSON lines file as ``{"t", "kind", "event", "object"}``
(:class:`lab.clusterhistory.ApiEvent`): the object trimmed to what a truth
needs (:func:`trim`), ``t`` the time it reached the recorder. A version that
changes nothing kept (a new ``resourceVersion``, a condition) is not written.
A watch resumes from the last resourceVersion it saw (bookmarks on); a
``410 Gone`` makes it list again, and a relist writes ``DELETED`` for what
vanished in between. Connection errors are retried with a doubling backoff
(at most 5 s), counted in :attr:`ApiRecorder.errors`. Nothing here imports
``watch/``: this is the lab's own witness, not callmap's watcher.

:func:`load_record` and :func:`read_call_logs` read the record and the
callers' logs (:mod:`lab.caller`) back for :mod:`lab.clustertruth`; a torn
or foreign line is counted and skipped.

:class:`KubeAccess` is a kubeconfig's server and client certificate, as files
(certificate data embedded in the kubeconfig is written under a directory of
the lab's, mode 0600), for this recorder and for :class:`lab.kubeapi.KubeClient`.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import yaml

from callmap.backoff import Backoff
from lab.clusterhistory import ApiEvent, parse_api_line
from lab.clustertruth import CallRecord, parse_call_log
from lab.errors import LabError
from lab.kubeapi import KubeClient

SOURCES = {
    "Pod": "/api/v1/pods",
    "Service": "/api/v1/services",
    "ReplicaSet": "/apis/apps/v1/replicasets",
    "Job": "/apis/batch/v1/jobs",
    "Node": "/api/v1/nodes",
}
"""What the recorder follows, cluster-wide."""
WATCH_SECONDS = 60
_MAX_BACKOFF = 5.0


# --- access -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KubeAccess:
    """An API server and the files of an admin client certificate for it."""

    server: str
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path, directory: Path) -> KubeAccess:
        """The current context of ``kubeconfig``; embedded data goes to files in ``directory``."""
        try:
            config = yaml.safe_load(kubeconfig.read_text())
            context = _named(config["contexts"], config["current-context"])["context"]
            cluster = _named(config["clusters"], context["cluster"])["cluster"]
            user = _named(config["users"], context["user"])["user"]
        except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
            raise LabError(f"cannot read kubeconfig {kubeconfig}: {exc!r}") from None
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

        def material(section: Mapping[str, Any], key: str, file: str) -> Path:
            if f"{key}-data" in section:
                path = directory / file
                path.touch(mode=0o600)
                path.write_bytes(base64.b64decode(section[f"{key}-data"]))
                return path
            if key in section:
                return (kubeconfig.parent / str(section[key])).resolve()
            raise LabError(f"kubeconfig {kubeconfig}: no {key} (the lab needs client certificates)")

        return cls(
            server=str(cluster["server"]),
            ca=material(cluster, "certificate-authority", "ca.crt"),
            cert=material(user, "client-certificate", "client.crt"),
            key=material(user, "client-key", "client.key"),
        )

    def client(self) -> KubeClient:
        return KubeClient(self.server, self.ca, self.cert, self.key)

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


def _named(entries: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for entry in entries:
        if entry.get("name") == name:
            return entry
    raise KeyError(name)


# --- trimming ---------------------------------------------------------------------


def trim(kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an object the truth reads; nothing that changes without meaning."""
    metadata = obj.get("metadata") or {}
    kept: dict[str, Any] = {
        key: metadata[key]
        for key in ("uid", "namespace", "name", "labels", "deletionTimestamp")
        if metadata.get(key) is not None
    }
    owners = [
        {k: ref[k] for k in ("kind", "name", "uid", "controller") if k in ref}
        for ref in metadata.get("ownerReferences") or []
    ]
    if owners:
        kept["ownerReferences"] = owners
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    result: dict[str, Any] = {"metadata": kept}
    if kind == "Pod":
        result["spec"] = _pick(spec, "nodeName", "hostNetwork", "hostname", "subdomain")
        result["status"] = _pick(status, "phase", "podIP", "podIPs")
    elif kind == "Service":
        result["spec"] = _pick(spec, "type", "clusterIP", "clusterIPs", "selector", "externalName")
    elif kind == "Node":
        result["spec"] = _pick(spec, "podCIDR", "podCIDRs", "unschedulable")
        result["status"] = _pick(status, "addresses")
    return result


def _pick(section: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {key: section[key] for key in keys if section.get(key) is not None}


# --- the recorder -----------------------------------------------------------------


class _Relist(Exception):
    """The watch's resourceVersion is gone (410): list again."""


class ApiRecorder:
    """Records :data:`SOURCES` into ``path`` until stopped; ``with`` starts and stops it."""

    def __init__(
        self, access: KubeAccess, path: Path, clock: Callable[[], float] = time.time
    ) -> None:
        parts = urlsplit(access.server)
        if parts.hostname is None:
            raise LabError(f"not an API server URL: {access.server!r}")
        self._host, self._port = parts.hostname, parts.port or 443
        self._context = access.ssl_context()
        self._path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listed = {kind: threading.Event() for kind in SOURCES}
        self._connections: dict[str, http.client.HTTPSConnection] = {}
        self._threads: list[threading.Thread] = []
        self._file: Any = None
        self.errors = 0
        """Requests that failed and were retried."""
        self.last_error: str | None = None

    def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._path.open("a", buffering=1)
        for kind in SOURCES:
            thread = threading.Thread(
                target=self._follow, args=(kind,), name=f"record-{kind}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def wait_listed(self, timeout: float) -> bool:
        """True once every kind has been listed (the record covers everything from now on)."""
        deadline = time.monotonic() + timeout
        return all(e.wait(max(0.0, deadline - time.monotonic())) for e in self._listed.values())

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            connections = list(self._connections.values())
        for connection in connections:  # wakes a thread blocked reading its watch
            if connection.sock is not None:
                with contextlib.suppress(OSError):
                    connection.sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=10)
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> ApiRecorder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _follow(self, kind: str) -> None:
        known: dict[str, dict[str, Any]] = {}
        version: str | None = None
        backoff = Backoff(0.25, _MAX_BACKOFF)
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list(kind, known)
                    self._listed[kind].set()
                version = self._watch(kind, version, known)
                backoff.reset()
            except _Relist:
                version = None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if self._stop.is_set():
                    return
                self.errors += 1
                self.last_error = f"{kind}: {exc!r}"
                self._stop.wait(backoff.next())

    def _list(self, kind: str, known: dict[str, dict[str, Any]]) -> str:
        response = self._get(kind, {})
        document = json.loads(response.read())
        seen = set()
        for item in document.get("items") or []:
            obj = trim(kind, item)
            uid = str(obj["metadata"].get("uid"))
            seen.add(uid)
            if known.get(uid) != obj:
                self._write(kind, "MODIFIED" if uid in known else "ADDED", obj)
                known[uid] = obj
        for uid in [uid for uid in known if uid not in seen]:
            self._write(kind, "DELETED", known.pop(uid))
        return str(document.get("metadata", {}).get("resourceVersion", ""))

    def _watch(self, kind: str, version: str, known: dict[str, dict[str, Any]]) -> str:
        query = {
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        response = self._get(kind, query)
        while line := response.readline():
            event = json.loads(line)
            kind_of_event, item = str(event.get("type")), event.get("object") or {}
            if kind_of_event == "ERROR":
                if item.get("code") == 410:
                    raise _Relist
                raise ValueError(f"watch error: {item.get('message')}")
            version = str(item.get("metadata", {}).get("resourceVersion", version))
            if kind_of_event not in ("ADDED", "MODIFIED", "DELETED"):
                continue  # BOOKMARK: only the version moves
            obj = trim(kind, item)
            uid = str(obj["metadata"].get("uid"))
            if kind_of_event == "DELETED":
                known.pop(uid, None)
                self._write(kind, "DELETED", obj)
            elif known.get(uid) != obj:
                known[uid] = obj
                self._write(kind, kind_of_event, obj)
        return version

    def _get(self, kind: str, query: dict[str, str]) -> http.client.HTTPResponse:
        connection = http.client.HTTPSConnection(
            self._host, self._port, context=self._context, timeout=WATCH_SECONDS + 30
        )
        with self._lock:
            old = self._connections.pop(kind, None)
            self._connections[kind] = connection
        if old is not None:
            old.close()
        if self._stop.is_set():
            raise OSError("stopping")
        target = SOURCES[kind] + (f"?{urlencode(query)}" if query else "")
        connection.request("GET", target, headers={"Accept": "application/json"})
        response = connection.getresponse()
        if response.status == 410:
            raise _Relist
        if response.status != 200:
            body = response.read()[:300].decode(errors="replace")
            raise ValueError(f"GET {target}: HTTP {response.status}: {body}")
        return response

    def _write(self, kind: str, event: str, obj: Mapping[str, Any]) -> None:
        line = json.dumps({"t": self._clock(), "kind": kind, "event": event, "object": obj})
        with self._lock:
            if self._file is not None:
                self._file.write(line + "\n")


# --- reading back -----------------------------------------------------------------


def load_record(path: Path) -> tuple[list[ApiEvent], int]:
    """The recorded events, and how many lines were not events."""
    events, bad = [], 0
    try:
        text = path.read_text()
    except FileNotFoundError:
        return [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            events.append(parse_api_line(line))
        except ValueError:
            bad += 1
    return events, bad


def read_call_logs(directory: Path) -> tuple[list[CallRecord], int]:
    """Every caller's log lines in ``directory`` (``*.jsonl``), and how many were torn."""
    records: list[CallRecord] = []
    bad = 0
    if not directory.is_dir():
        return records, bad
    for path in sorted(directory.glob("*.jsonl")):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            bad += 1
            continue
        more, torn = parse_call_log(text)
        records += more
        bad += torn
    return records, bad
