"""``callmap serve``: the map, live, in a browser. Read-only.

An aiohttp server holds the current map (:class:`LiveMap`) and streams it to
each page as server-sent events: a ``snapshot`` of every edge (expired ones
included: the page shows what changed, and its time slider needs them), then
a ``change`` per edge added, updated or removed, and a ``ping`` now and then.
Where the map comes from:

- ``--from kafka`` (default): the edges topic, followed live
  (:class:`~sinks.maps.follower.Follower`); pages get their snapshot once it
  has been read up to where it ended at start.
- any other ``--from`` (a database or JSON Lines sink): read again every
  ``--refresh`` seconds; the differences go out as changes. A read that fails
  is logged and the last map kept.

Pod labels (for the page's label filter) and the policies of ``api/policy``
come from the identities, read again every ``--refresh`` seconds.

Routes: ``/`` (the page), ``/static/...`` (its assets), ``/api/events`` (the
stream), ``/api/map`` (the snapshot as one JSON document), ``/api/policy?
workload=NODE&kind=networkpolicy|cilium|intents`` (YAML), ``/api/status``
(edges, pages watching, records that did not decode) and ``/healthz``.

The page (``sinks/maps/web``, vendored JavaScript included) is served from
the package: nothing is fetched from elsewhere, and its Content Security
Policy allows only this server. Every route is a GET. The server listens on
loopback unless told otherwise; with a token (``--token-file`` or
``CALLMAP_SERVE_TOKEN``), every ``/api/`` route wants it as ``Authorization:
Bearer TOKEN`` or ``?token=TOKEN`` (an EventSource cannot send headers). The
page and its assets hold no data and need none: a ``<script src>`` cannot
carry it, and the page passes on the token of its own address.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from callmap.errors import CallmapError
from callmap.signals import on_stop_signals
from callmap.wire import EDGES, GLOBAL_EDGES, Edge, PodIdentity, ServiceIdentity
from sinks.endpoints import clusters_in, placed
from sinks.health import SLOW_MS
from sinks.maps import questions
from sinks.maps.filters import MapFilter
from sinks.maps.follower import Follower
from sinks.maps.formats.labels import LabelBook
from sinks.maps.formats.webgraph import (
    MapChange,
    change_json,
    changes_between,
    event_frame,
    node_id,
    snapshot,
)
from sinks.maps.readers import load_map, read_identities
from sinks.maps.settings import ServeSettings

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).with_name("web")
PING_SECONDS = 15.0
MAX_BACKLOG = 10_000
"""Frames a page may fall behind by before its stream is ended (it reconnects and
gets a new snapshot rather than an ever-growing queue)."""
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(eq=False, slots=True)
class Watcher:
    """One page's stream: the frames not yet sent to it."""

    frames: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    lagging: bool = False


class LiveMap:
    """The current map (the edges ``selection`` keeps, expired ones included) and the
    pages watching it."""

    def __init__(self, selection: MapFilter, source: str, slow_ms: float = SLOW_MS) -> None:
        self.selection = replace(selection, include_expired=True)
        self.source = source
        self.slow_ms = slow_ms
        """The p99 round-trip time (ms) from which the page marks a call slow."""
        self.edges: dict[str, Edge] = {}
        self.pods: list[PodIdentity] = []
        self.services: list[ServiceIdentity] = []
        self.labels = LabelBook()
        self.rejected = 0
        """Records of the source that did not decode: in all (Kafka), or at the last read."""
        self.ready = asyncio.Event()
        self._watchers: set[Watcher] = set()

    def apply(self, change: MapChange) -> None:
        """Take one change into the map and send it to every page."""
        edge = change.edge
        if edge is not None and not self.selection.matches(edge):
            edge = None
        if edge is None:
            if self.edges.pop(change.edge_id, None) is None:
                return
        else:
            self.edges[change.edge_id] = edge
        if self._watchers:  # reading a topic from its start, nobody watches yet: encode nothing
            change = MapChange(change.edge_id, edge)
            self._send(event_frame("change", change_json(change, self.labels, self.slow_ms)))

    def _send(self, frame: bytes) -> None:
        for watcher in self._watchers:
            if watcher.lagging:
                continue
            lagging = watcher.frames.qsize() >= MAX_BACKLOG
            watcher.lagging = lagging
            watcher.frames.put_nowait(b"" if lagging else frame)  # b"": wakes it to end

    def replace_all(self, edges: list[Edge]) -> None:
        """Make the map ``edges`` (a fresh read of the source), as changes."""
        wanted = {edge.edge_id: edge for edge in edges if self.selection.matches(edge)}
        for change in changes_between(self.edges, wanted):
            self.apply(change)

    def set_identities(self, pods: list[PodIdentity], services: list[ServiceIdentity]) -> None:
        """New identities; when they change the labels of a workload on the map, every
        page gets a new snapshot (labels are on the nodes it already has). Labels of
        workloads the map does not show (another cluster's, say) change nothing."""
        watched = self.ready.is_set() and bool(self._watchers)
        before = self._shown_labels() if watched else None
        self.pods, self.services = pods, services
        self.labels = LabelBook.from_pods(pods)
        if watched and self._shown_labels() != before:
            self._send(self.snapshot_frame())

    def _shown_labels(self) -> dict[str, Mapping[str, str] | None]:
        """The labels each workload node of the map shows, by node id."""
        shown: dict[str, Mapping[str, str] | None] = {}
        for edge in self.edges.values():
            for endpoint in (edge.client, edge.server):
                node = placed(edge, endpoint)
                if node.type == "workload":
                    shown[node_id(node)] = self.labels.known(node)
        return shown

    def snapshot(self) -> dict[str, object]:
        """The whole map now, as the page's first event carries it."""
        edges = [self.edges[key] for key in sorted(self.edges)]
        return snapshot(edges, time.time(), self.source, self.labels, self.slow_ms)

    def snapshot_frame(self) -> bytes:
        return event_frame("snapshot", self.snapshot())

    def watch(self) -> Watcher:
        watcher = Watcher()
        self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    @property
    def watchers(self) -> int:
        """Pages watching now."""
        return len(self._watchers)

    def policy(self, workload: str, kind: str) -> tuple[str, list[str]] | None:
        """What callmap exports for the node ``workload`` (a node id): its ingress policy
        as a server (``networkpolicy``, ``cilium``) or its ClientIntents as a client
        (``intents``), and why parts were left out; None when it is no workload on that
        side of a call."""
        side = "client" if kind == "intents" else "server"
        mine = [
            edge
            for edge in self.edges.values()
            if node_id(placed(edge, getattr(edge, side))) == workload
        ]
        endpoint = getattr(mine[0], side) if mine else None
        if endpoint is None or endpoint.type != "workload":
            return None
        name = f"{endpoint.namespace}/{endpoint.name}"
        return questions.policy(mine, name, kind, self.pods, self.services)


# --- where the map comes from ---------------------------------------------------------------


async def follow_topic(live: LiveMap, settings: ServeSettings, stop: asyncio.Event) -> None:
    """Keep ``live`` equal to the edges topic, as it changes."""
    query = settings.query
    follower = Follower(
        query.kafka,
        GLOBAL_EDGES if query.source.global_edges else EDGES,
        query.selection.clusters,
        on_change=lambda change: live.apply(MapChange(change.edge_id, change.edge)),
    )
    running = asyncio.create_task(follower.run(stop))
    while not running.done():
        await asyncio.wait({running}, timeout=0.1)
        live.rejected = follower.rejected
        if follower.caught_up:
            live.ready.set()
    await running


async def poll_store(live: LiveMap, settings: ServeSettings, stop: asyncio.Event) -> None:
    """Keep ``live`` equal to a sink's store, read again every ``refresh`` seconds."""
    query = settings.query
    while not stop.is_set():
        try:
            data = await load_map(query.source, query.kafka, identities=False)
        except CallmapError as exc:
            log.warning("reading the map from %s failed: %s", query.source.kind, exc)
        else:
            for problem in data.problems:
                log.warning("skipping a record of %s: %s", query.source.kind, problem)
            live.rejected = len(data.problems)
            live.replace_all(data.edges)
            live.ready.set()
        await _pause(stop, settings.refresh)


async def refresh_identities(live: LiveMap, settings: ServeSettings, stop: asyncio.Event) -> None:
    """Pods and services from Kafka every ``refresh`` seconds, for labels and policies."""
    query = settings.query
    while not stop.is_set():
        problems: list[str] = []
        try:
            pods, services = await read_identities(
                query.kafka, query.source.global_edges, clusters_in(live.edges.values()), problems
            )
        except CallmapError as exc:
            log.info("no identities (labels and policies name workloads by convention): %s", exc)
        else:
            live.set_identities(pods, services)
        await _pause(stop, settings.refresh)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


# --- the HTTP side ---------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guard(token: str | None) -> Middleware:
    """The middleware: the token on ``/api/`` where one is set, security headers everywhere."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is not None and request.path.startswith("/api/") and not _carries(request, token):
            response: web.StreamResponse = web.Response(status=401, text="token required\n")
        else:
            response = await handler(request)
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
        return response

    return middleware


def _carries(request: web.Request, token: str) -> bool:
    given = request.query.get("token", "")
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        given = header[len("Bearer ") :]
    return hmac.compare_digest(given.encode(), token.encode())


def build_app(live: LiveMap, token: str | None = None) -> web.Application:
    """The web application: the page, its assets, the event stream, policies, health."""
    app = web.Application(middlewares=[guard(token)])

    async def page(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB_DIR / "index.html")

    async def events(request: web.Request) -> web.StreamResponse:
        await live.ready.wait()
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "X-Accel-Buffering": "no",
                **SECURITY_HEADERS,
            }
        )
        await response.prepare(request)
        watcher = live.watch()
        try:
            with contextlib.suppress(ConnectionResetError):  # the page went away
                await response.write(live.snapshot_frame())
                while not watcher.lagging:
                    try:
                        async with asyncio.timeout(PING_SECONDS):
                            frame = await watcher.frames.get()
                    except TimeoutError:
                        frame = event_frame("ping", {"now": time.time()})
                    if frame:
                        await response.write(frame)
        finally:
            live.unwatch(watcher)
        return response

    async def the_map(_: web.Request) -> web.StreamResponse:
        await live.ready.wait()
        return web.json_response(live.snapshot())

    async def policy(request: web.Request) -> web.StreamResponse:
        workload, kind = request.query.get("workload", ""), request.query.get("kind", "")
        if kind not in questions.POLICY_KINDS:
            kinds = ", ".join(questions.POLICY_KINDS)
            return web.Response(status=400, text=f"kind: expected one of {kinds}\n")
        found = live.policy(workload, kind)
        if found is None:
            side = "client" if kind == "intents" else "server"
            return web.Response(status=404, text=f"no workload of that id is a {side} of a call\n")
        text, warnings = found
        notes = "".join(f"# warning: {' '.join(w.split())}\n" for w in warnings)
        if not text.strip():
            notes += f"# callmap writes no {kind} for this workload (see the warnings)\n"
        return web.Response(text=notes + text, content_type="text/plain")

    async def status(_: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "ready": live.ready.is_set(),
                "source": live.source,
                "edges": len(live.edges),
                "pages": live.watchers,
                "records_rejected": live.rejected,
            }
        )

    async def health(_: web.Request) -> web.StreamResponse:
        if live.ready.is_set():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="the map is not read yet\n")

    app.router.add_get("/", page)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/map", the_map)
    app.router.add_get("/api/policy", policy)
    app.router.add_get("/api/status", status)
    app.router.add_get("/healthz", health)
    app.router.add_static("/static", WEB_DIR, follow_symlinks=False)
    return app


async def serve(settings: ServeSettings, stop: asyncio.Event | None = None) -> None:
    """Serve the map until ``stop`` is set, or SIGTERM or SIGINT."""
    if stop is None:
        stop = asyncio.Event()
        on_stop_signals(stop.set)
    query = settings.query
    live = LiveMap(query.selection, query.source.kind, settings.slow_ms)
    reader = follow_topic if query.source.kind == "kafka" else poll_store
    tasks = [asyncio.create_task(reader(live, settings, stop))]
    if query.source.kind == "kafka":
        tasks.append(asyncio.create_task(refresh_identities(live, settings, stop)))
    runner = web.AppRunner(build_app(live, settings.token), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    log.info("serving the map on http://%s:%d/", settings.host, settings.port)
    try:
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopping:
                task.result()  # a reader that ended on its own: its error ends the server
    finally:
        stop.set()
        await runner.cleanup()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
