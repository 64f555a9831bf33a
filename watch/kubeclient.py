"""The Kubernetes adapter: client configuration, raw lists, watches and gets.

Lists, watches and gets go through kubernetes-asyncio's ``ApiClient.call_api``
with ``_preload_content=False``: the JSON is decoded into plain dicts, object
by object, and never into the generated model classes (ten times the memory
and the time, for fields callmap never reads). Owners are asked for as
metadata only (``PartialObjectMetadata``), as controller-runtime does.

Errors stop here: a 410 is :class:`Gone` (list again), a 404 is
:class:`NotFound`, 401 and 403 and other refusals are ``PermanentError`` and
everything that may pass (connection errors, timeouts, 429, 5xx) is
``TemporaryError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from callmap.errors import CallmapError, ConfigError, PermanentError, TemporaryError
from watch.options import KubeSource

_JSON = "application/json"
_METADATA_LIST = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
_METADATA = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"


class Gone(CallmapError):
    """The resource version is too old (HTTP 410): list again."""


class NotFound(CallmapError):
    """The object does not exist (HTTP 404)."""


class Conflict(PermanentError):
    """A write lost a race: the object changed since it was read (HTTP 409)."""


class Inactive(CallmapError):
    """A watch sent nothing for longer than the inactivity timeout."""


@dataclass(frozen=True, slots=True)
class Resource:
    """One API resource the watcher reads."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    metadata_only: bool = False
    """Ask for ``PartialObjectMetadata`` (a list: ``PartialObjectMetadataList``; a
    watch's events carry single objects): enough to follow ownerReferences."""

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        path = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is not None:
            path += f"/namespaces/{namespace}"
        path += f"/{self.plural}"
        return f"{path}/{name}" if name is not None else path


POD = Resource("", "v1", "pods", "Pod")
SERVICE = Resource("", "v1", "services", "Service")
ENDPOINT_SLICE = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
NODE = Resource("", "v1", "nodes", "Node", namespaced=False)
OWNERS: dict[tuple[str, str], Resource] = {
    (group, kind): Resource(group, "v1", plural, kind, metadata_only=True)
    for group, kind, plural in (
        ("apps", "ReplicaSet", "replicasets"),
        ("apps", "Deployment", "deployments"),
        ("apps", "StatefulSet", "statefulsets"),
        ("apps", "DaemonSet", "daemonsets"),
        ("batch", "Job", "jobs"),
        ("batch", "CronJob", "cronjobs"),
    )
}
LEASE = Resource("coordination.k8s.io", "v1", "leases", "Lease")
NAMESPACE = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
SERVICE_EXPORT = Resource(
    "multicluster.x-k8s.io", "v1alpha1", "serviceexports", "ServiceExport", metadata_only=True
)
"""The MCS API's export of a service to the clusterset (KEP-1645); a CRD, when installed."""
CLUSTER_ID_NAMESPACE = "kube-system"
"""Its UID is the cluster's id (KEP-2149: the id Kubernetes' multi-cluster work uses)."""


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Any]
    resource_version: str
    continue_token: str | None


@contextlib.asynccontextmanager
async def api_client(source: KubeSource) -> AsyncIterator[client.ApiClient]:
    """A client for the configured cluster: in-cluster, or a kubeconfig and context."""
    configuration = client.Configuration()
    in_cluster = source.in_cluster
    if in_cluster is None:
        in_cluster = "KUBERNETES_SERVICE_HOST" in os.environ and source.kubeconfig is None
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await config.load_kube_config(
                config_file=source.kubeconfig,
                context=source.context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (ConfigException, OSError) as exc:
        where = "in-cluster service account" if in_cluster else "kubeconfig"
        raise ConfigError(f"cannot configure the Kubernetes client ({where}): {exc}") from None
    async with client.ApiClient(configuration) as api:
        yield api


def error_for_status(status: int, action: str, detail: str = "") -> CallmapError:
    """The callmap error for an HTTP status of the API server (``detail``: its body)."""
    with contextlib.suppress(msgspec.DecodeError, AttributeError):  # a Status says it best
        detail = str(msgspec.json.decode(detail).get("message") or detail)
    message = f"{action}: HTTP {status}" + (f": {detail[:300]}" if detail else "")
    if status == 410:
        return Gone(message)
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if status == 429 or status >= 500:
        return TemporaryError(message)
    return PermanentError(message)


@contextlib.contextmanager
def map_api_errors(action: str) -> Iterator[None]:
    """Translate what kubernetes-asyncio and aiohttp raise while doing ``action``."""
    try:
        yield
    except ApiException as exc:
        body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
        raise error_for_status(int(exc.status or 0), action, str(body or exc.reason)) from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise TemporaryError(f"{action}: API server unreachable or slow: {exc!r}") from exc
    except msgspec.DecodeError as exc:
        raise TemporaryError(f"{action}: the API server sent bad JSON: {exc}") from exc


class KubeApi:
    """Raw JSON reads of the resources the watcher needs."""

    def __init__(self, api: client.ApiClient, request_timeout: float = 30.0) -> None:
        self.api = api
        self._timeout = request_timeout

    async def _open(
        self,
        resource: Resource,
        params: list[tuple[str, Any]],
        *,
        action: str,
        list_: bool,
        path: str | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> aiohttp.ClientResponse:
        if resource.metadata_only:
            accept = f"{_METADATA_LIST if list_ else _METADATA},{_JSON}"
        else:
            accept = _JSON
        response: aiohttp.ClientResponse = await self.api.call_api(
            path or resource.path(),
            "GET",
            query_params=params,
            header_params={"Accept": accept},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout
            or aiohttp.ClientTimeout(sock_connect=self._timeout, sock_read=self._timeout),
        )
        if response.status != 200:
            detail = (await response.read()).decode(errors="replace")
            response.release()
            raise error_for_status(response.status, action, detail)
        return response

    async def list_page(self, resource: Resource, limit: int, token: str | None) -> Page:
        """One page of a cluster-wide list."""
        params: list[tuple[str, Any]] = [("limit", limit)]
        if token:
            params.append(("continue", token))
        action = f"list {resource.plural}"
        with map_api_errors(action):
            response = await self._open(resource, params, action=action, list_=True)
            async with response:
                data = msgspec.json.decode(await response.read())
        meta = data.get("metadata") or {}
        return Page(data.get("items") or [], meta.get("resourceVersion", ""), meta.get("continue"))

    async def serves(self, resource: Resource) -> bool:
        """True if the API server serves ``resource`` (a CRD's kind may not be installed)."""
        path = resource.path().rsplit("/", 1)[0]  # the group version's discovery document
        action = f"discover {resource.group}/{resource.version}"
        with map_api_errors(action):
            try:
                response = await self._open(resource, [], action=action, list_=False, path=path)
            except NotFound:
                return False
            async with response:
                document = msgspec.json.decode(await response.read())
        names = {entry.get("name") for entry in document.get("resources") or []}
        return resource.plural in names

    async def cluster_uid(self) -> str:
        """The cluster's id: the UID of its kube-system namespace (KEP-2149)."""
        namespace = await self.get(NAMESPACE, None, CLUSTER_ID_NAMESPACE)
        return str(namespace["metadata"]["uid"])

    async def get(self, resource: Resource, namespace: str | None, name: str) -> Any:
        """One object as a dict; NotFound when it does not exist."""
        path = resource.path(namespace if resource.namespaced else None, name)
        action = f"get {resource.plural} {namespace}/{name}"
        with map_api_errors(action):
            response = await self._open(resource, [], action=action, list_=False, path=path)
            async with response:
                return msgspec.json.decode(await response.read())

    async def watch(
        self,
        resource: Resource,
        resource_version: str,
        *,
        timeout_seconds: int,
        inactivity_timeout: float,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Watch events (dicts with ``type`` and ``object``) from ``resource_version`` on.

        Ends when the server ends the request; raises :class:`Inactive` when
        nothing arrives for ``inactivity_timeout`` seconds, and :class:`Gone`
        for a 410, as a status or as an ERROR event.
        """
        params: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", timeout_seconds),
        ]
        action = f"watch {resource.plural}"
        with map_api_errors(action):
            # No client-side total timeout: the server ends the request; silence is ours to judge.
            timeout = aiohttp.ClientTimeout(sock_connect=self._timeout)
            response = await self._open(
                resource, params, action=action, list_=False, timeout=timeout
            )
        async with response:
            buffer = b""
            while True:
                with map_api_errors(action):
                    try:
                        async with asyncio.timeout(inactivity_timeout):
                            chunk = await response.content.readany()
                    except TimeoutError:
                        raise Inactive(f"{action}: silent for {inactivity_timeout:g}s") from None
                if not chunk:
                    return
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        with map_api_errors(action):
                            event = msgspec.json.decode(line)
                        yield _checked(event, action)


def _checked(event: Any, action: str) -> dict[str, Any]:
    if not isinstance(event, dict) or "type" not in event:
        raise TemporaryError(f"{action}: not a watch event: {str(event)[:200]}")
    if event["type"] == "ERROR":
        status = event.get("object") or {}
        code = status.get("code") if isinstance(status, dict) else None
        raise error_for_status(int(code or 500), action, str(status.get("message", "")))
    return event
