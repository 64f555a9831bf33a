"""``callmap mcp``: the map for assistants, over the Model Context Protocol. Read-only.

Built on the official MCP Python SDK (the ``mcp`` package, an optional
extra: ``pip install 'callmap[mcp]'``). Tools answer with the pure functions
of :mod:`sinks.maps.questions`; resources hold the whole map as ``callmap
list`` prints it (text and JSON). The map is read from ``--from`` as the
other map commands read it and kept for ``refresh`` seconds, so a burst of
questions reads Kafka (or the database) once. Nothing here writes anywhere:
every tool is annotated read-only, and the server has no tool that changes
the map or the cluster.

stdio is the default transport (an assistant starts ``callmap mcp`` as a
subprocess); ``--transport http`` serves streamable HTTP on ``--host``
(loopback unless told otherwise) and ``--port``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

from sinks.lifecycle import live
from sinks.maps import questions
from sinks.maps.filters import parse_since
from sinks.maps.formats.listing import render_json, render_text
from sinks.maps.readers import MapData, load_map
from sinks.maps.settings import MapQuery, McpSettings

INSTRUCTIONS = """\
callmap maps who calls whom in Kubernetes clusters, from DNS answers and socket
tables seen on the nodes. Name a workload as `name` or `namespace/name` (a
service name, an external DNS name or an IP work too). Answers list calls as
client -> server with ports, how each was seen (dns, socket-client,
socket-server), first and last seen. Read-only."""
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


class MapCache:
    """The map, read at most once per ``refresh`` seconds."""

    def __init__(self, query: MapQuery, refresh: float) -> None:
        self._query = query
        self._refresh = refresh
        self._data: MapData | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> MapData:
        """The map's edges (those the query's filters select) and identities."""
        async with self._lock:
            if self._data is None or time.monotonic() - self._read_at >= self._refresh:
                query = self._query
                data = await load_map(query.source, query.kafka, identities=True)
                data.edges = query.selection.select(data.edges)
                self._data, self._read_at = data, time.monotonic()
            return self._data


def build_server(cache: MapCache) -> MCPServer:
    """The MCP server: its tools and resources, all read-only."""
    server = MCPServer(name="callmap", instructions=INSTRUCTIONS)

    @server.tool(annotations=READ_ONLY)
    async def who_calls(workload: str) -> list[dict[str, Any]]:
        """Every call to a workload: its clients, with ports, sources and when seen."""
        return questions.callers((await cache.get()).edges, workload)

    @server.tool(annotations=READ_ONLY)
    async def what_calls(workload: str) -> list[dict[str, Any]]:
        """Every call a workload makes: its servers (workloads, externals, the API server)."""
        return questions.callees((await cache.get()).edges, workload)

    @server.tool(annotations=READ_ONLY)
    async def new_calls(since: str) -> list[dict[str, Any]]:
        """Calls first seen since a time: a duration back from now (30m, 24h, 7d) or an
        ISO 8601 time."""
        return questions.new_since((await cache.get()).edges, parse_since(since, time.time()))

    @server.tool(annotations=READ_ONLY)
    async def call_path(start: str, goal: str) -> list[dict[str, Any]]:
        """The shortest chain of calls from one workload to another; empty if there is none."""
        return questions.path((await cache.get()).edges, start, goal) or []

    @server.tool(annotations=READ_ONLY)
    async def policy(workload: str, kind: str = "networkpolicy") -> str:
        """The policy callmap would export for a workload, as YAML: its ingress
        NetworkPolicy (kind networkpolicy) or CiliumNetworkPolicy (cilium) as a server,
        or its ClientIntents (intents) as a client. Warnings follow as YAML comments."""
        data = await cache.get()
        text, warnings = questions.policy(
            data.edges, workload, kind, data.pods or (), data.services or ()
        )
        notes = "".join(f"# warning: {' '.join(w.split())}\n" for w in warnings)
        return notes + text

    @server.resource("callmap://map", mime_type="text/plain")
    async def the_map() -> str:
        """The whole map as `callmap list` prints it."""
        return render_text(live((await cache.get()).edges))

    @server.resource("callmap://map.json", mime_type="application/json")
    async def the_map_json() -> str:
        """The whole map as `callmap list --output json` prints it."""
        return render_json(live((await cache.get()).edges))

    return server


def serve(settings: McpSettings) -> None:
    """Run the server until its client goes (stdio) or a signal stops it (HTTP)."""
    server = build_server(MapCache(settings.query, settings.refresh))
    if settings.transport == "http":
        server.run("streamable-http", host=settings.host, port=settings.port)
    else:
        server.run("stdio")
