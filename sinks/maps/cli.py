"""``callmap list``, ``callmap export`` and ``callmap visualize``: the map for people.

All three read the map from ``--from`` (see :mod:`sinks.maps.readers`), keep what
the filters select (see :mod:`sinks.maps.filters`) and write to stdout or ``-o``.
Each command turns its options (and the environment) into one settings object
of :mod:`sinks.maps.settings`, then runs on that alone. Warnings (what a format
cannot express, records that did not decode) go to stderr, escaped, so stdout
stays a clean document.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from callmap.config import load_settings
from callmap.errors import CallmapError
from callmap.optiongroups import metrics_port_option, option_group
from sinks.escape import terminal
from sinks.health import SLOW_MS
from sinks.maps.filters import MapFilter, parse_since
from sinks.maps.formats.cilium import CiliumOptions, cilium_policies
from sinks.maps.formats.documents import render
from sinks.maps.formats.dot import render_dot
from sinks.maps.formats.intents import CLUSTERSET_DOMAIN, client_intents
from sinks.maps.formats.labels import DEFAULT_LABEL_KEY, LabelBook
from sinks.maps.formats.listing import render_json, render_text
from sinks.maps.formats.netpol import NetpolOptions, network_policies
from sinks.maps.formats.policy import Export, PortMap
from sinks.maps.formats.servicegraph import DEFAULT_MAX_SERIES
from sinks.maps.formats.tabular import edges_csv, edges_json
from sinks.maps.output import names_directory, write_output, write_split
from sinks.maps.readers import MapData, load_map, parse_source
from sinks.maps.settings import (
    DRAWINGS,
    EXPORT_FORMATS,
    LIST_FORMATS,
    ExportSettings,
    ListSettings,
    MapQuery,
    McpSettings,
    MetricsSettings,
    ServeSettings,
    VisualizeSettings,
)

FuncT = Callable[..., Any]
ChoiceT = TypeVar("ChoiceT", bound=str)


def _guard(function: FuncT) -> FuncT:
    """callmap's own errors as a one-line message and exit status 1."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (CallmapError, ValueError, OSError, yaml.YAMLError) as exc:
            raise click.ClickException(terminal(str(exc))) from exc

    return wrapper


def _map_query(
    *,
    source: str,
    namespace: tuple[str, ...],
    client: tuple[str, ...],
    server: tuple[str, ...],
    cluster: tuple[str, ...],
    since: str | None,
    include_expired: bool,
    global_edges: bool,
) -> MapQuery:
    """The options every map command shares, with the Kafka settings of the environment."""
    selection = MapFilter(
        namespaces=frozenset(namespace),
        clients=frozenset(client),
        servers=frozenset(server),
        clusters=frozenset(cluster),
        since=parse_since(since, time.time()) if since else None,
        include_expired=include_expired,
    )
    return MapQuery(parse_source(source, global_edges), selection, load_settings().kafka)


_map_options = option_group(
    [
        click.option(
            "--from",
            "source",
            default="kafka",
            show_default=True,
            envvar="CALLMAP_MAP_FROM",
            help="kafka, sqlite:///PATH, postgresql://... or jsonl:PATH (env CALLMAP_MAP_FROM).",
        ),
        click.option("--namespace", "-n", multiple=True, help="Only edges touching it (repeat)."),
        click.option("--client", multiple=True, help="Only edges from it: NAME or NS/NAME."),
        click.option("--server", multiple=True, help="Only edges to it: name, DNS name, IP."),
        click.option(
            "--cluster",
            multiple=True,
            help="Only edges with a side in this cluster (repeat); policies: its workloads.",
        ),
        click.option("--since", help="Only edges seen since: 30m, 24h, 7d or an ISO 8601 time."),
        click.option("--include-expired", is_flag=True, help="Keep expired edges too."),
        click.option(
            "--global",
            "global_edges",
            is_flag=True,
            help="Read the hub's global edges (callmap aggregate) instead of a cluster's.",
        ),
    ],
    _guard(_map_query),
)
"""The options every map command shares, given to it first as one MapQuery."""


def _choice(value: str, choices: tuple[ChoiceT, ...]) -> ChoiceT:
    """``value`` as the member of ``choices`` it is (click.Choice checked that it is one)."""
    for choice in choices:
        if choice == value:
            return choice
    raise ValueError(f"{value!r}: expected one of {', '.join(choices)}")


_slow_ms_option = click.option(
    "--slow-ms",
    type=click.FloatRange(min=0, min_open=True),
    default=SLOW_MS,
    show_default=True,
    help="A call whose p99 round-trip time (lately) is at least this many ms is slow.",
)
"""The slow rule's threshold, for every command that marks slow calls."""


def _warn(command: str, text: str) -> None:
    click.echo(f"callmap {command}: warning: {terminal(text)}", err=True)


def _load(command: str, query: MapQuery, identities: bool = False) -> MapData:
    data = asyncio.run(load_map(query.source, query.kafka, identities=identities))
    for problem in data.problems[:20]:
        _warn(command, problem)
    if len(data.problems) > 20:
        _warn(command, f"{len(data.problems) - 20} more records did not decode")
    return data


@click.command("list")
@_map_options
@click.option("--output", type=click.Choice(LIST_FORMATS), default="text", show_default=True)
@click.option(
    "--health",
    is_flag=True,
    help="text: how each call's connections went lately; failing and slow marked.",
)
@_slow_ms_option
@_guard
def list_command(query: MapQuery, output: str, health: bool, slow_ms: float) -> None:
    """Print who calls whom: "X in namespace Y calls:" and its servers.

    When the edges shown span several clusters, every name carries its cluster.
    """
    show_list(ListSettings(query, _choice(output, LIST_FORMATS), health, slow_ms))


def show_list(settings: ListSettings) -> None:
    """``callmap list``: the map as text or JSON on stdout."""
    edges = settings.query.selection.select(_load("list", settings.query).edges)
    if settings.output == "json":
        write_output(render_json(edges, slow_ms=settings.slow_ms), None)
    else:
        text = render_text(edges, health=settings.health, slow_ms=settings.slow_ms)
        write_output(text, None)


def _dns_labels(pairs: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals:
            raise ValueError(f"--dns-label {pair!r}: expected KEY=VALUE")
        labels[key] = value
    return labels or {"k8s-app": "kube-dns"}


@click.command()
@_map_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(EXPORT_FORMATS),
    required=True,
    help="What to write.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(),  # as given: a Path would drop the "/" that asks for a directory
    help="A file, or a directory (existing, or ending in /) for one file per object.",
)
@click.option("--json", "as_json", is_flag=True, help="Kubernetes objects as JSON, not YAML.")
@click.option("--egress", is_flag=True, help="networkpolicy: also per-client egress policies.")
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Pod labels file.",
)
@click.option("--label-key", default=DEFAULT_LABEL_KEY, show_default=True, help="Label convention.")
@click.option("--identities/--no-identities", default=True, help="Read pod and service identities.")
@click.option("--dns-namespace", default="kube-system", show_default=True)
@click.option("--dns-label", multiple=True, help="DNS pods' label KEY=VALUE [k8s-app=kube-dns].")
@click.option(
    "--clusterset-domain",
    default=CLUSTERSET_DOMAIN,
    show_default=True,
    help="intents: the MCS domain that names services of other clusters.",
)
@_slow_ms_option
@_guard
def export(
    query: MapQuery,
    fmt: str,
    output: str | None,
    as_json: bool,
    egress: bool,
    labels: Path | None,
    label_key: str,
    identities: bool,
    dns_namespace: str,
    dns_label: tuple[str, ...],
    clusterset_domain: str,
    slow_ms: float,
) -> None:
    """Export the map as ClientIntents, NetworkPolicies, CiliumNetworkPolicies, JSON or CSV."""
    chosen = _choice(fmt, EXPORT_FORMATS)
    settings = ExportSettings(
        query=query,
        format=chosen,
        output=Path(output) if output is not None else None,
        per_object=output is not None and names_directory(output),
        encoding="json" if as_json else "yaml",
        egress=egress,
        labels=labels,
        label_key=label_key,
        identities=identities,
        dns_namespace=dns_namespace,
        # Only the Kubernetes objects name the DNS pods; the edges as data never do.
        dns_labels={} if chosen in ("json", "csv") else _dns_labels(dns_label),
        clusterset_domain=clusterset_domain,
        slow_ms=slow_ms,
    )
    export_map(settings)


def export_map(settings: ExportSettings) -> None:
    """``callmap export``: the edges as data, or Kubernetes objects built from them."""
    data = _load("export", settings.query, identities=settings.wants_identities)
    if settings.format in ("json", "csv"):
        edges = settings.query.selection.select(data.edges)
        if settings.format == "json":
            as_data: str | bytes = edges_json(edges)
        else:
            as_data = edges_csv(edges, slow_ms=settings.slow_ms)
        write_output(as_data, settings.output)
        return
    result = _objects(settings, data)
    for warning in dict.fromkeys(result.warnings):
        _warn("export", warning)
    if result.counts:
        counted = ", ".join(f"{reason}={count}" for reason, count in sorted(result.counts.items()))
        click.echo(f"callmap export: {counted}", err=True)
    if settings.output is not None and settings.per_object:
        for path in write_split(result.documents, settings.output, settings.encoding):
            click.echo(f"wrote {path}", err=True)
    else:
        write_output(render(result.documents, settings.encoding), settings.output)


def _objects(settings: ExportSettings, data: MapData) -> Export:
    """The ClientIntents, NetworkPolicies or CiliumNetworkPolicies of the live edges."""
    selection = settings.query.selection
    ports = PortMap(data.services or ())
    edges = [edge for edge in data.edges if selection.live(edge)]
    if settings.format == "intents":
        return client_intents(edges, selection, settings.clusterset_domain)
    book = _labels(settings, data)
    if settings.format == "networkpolicy":
        netpol = NetpolOptions(
            egress=settings.egress,
            dns_namespace=settings.dns_namespace,
            dns_labels=settings.dns_labels,
        )
        return network_policies(edges, book, selection, netpol, ports)
    cilium = CiliumOptions(dns_namespace=settings.dns_namespace, dns_labels=settings.dns_labels)
    return cilium_policies(edges, book, selection, cilium, ports)


def _labels(settings: ExportSettings, data: MapData) -> LabelBook:
    """Pod labels from the labels file, then the pods (of each workload's cluster), then
    the convention."""
    key = settings.label_key
    book = LabelBook(convention_key=key)
    pods = data.pods or []
    if pods:
        book = LabelBook.from_pods(pods, convention_key=key)
    if settings.labels is not None:
        document = yaml.safe_load(settings.labels.read_text()) or {}
        if not isinstance(document, dict):
            raise ValueError(f"{settings.labels}: expected a mapping of namespace/workload")
        book = LabelBook.from_mapping(document, convention_key=key).over(book)
    return book


@click.command()
@_map_options
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="map.svg, map.png or map.dot (the extension picks the format).",
)
@click.option("--title", default="callmap", show_default=True)
@_slow_ms_option
@_guard
def visualize(query: MapQuery, output: Path, title: str, slow_ms: float) -> None:
    """Draw the map with Graphviz: namespaces as clusters, externals apart.

    A map of several Kubernetes clusters draws one box per cluster around its namespaces.
    """
    drawing = DRAWINGS.get(output.suffix.lower().lstrip("."))
    if drawing is None:
        raise click.BadParameter("the file name must end in .svg, .png or .dot", param_hint="-o")
    draw_map(VisualizeSettings(query, output, drawing, title, slow_ms))


def draw_map(settings: VisualizeSettings) -> None:
    """``callmap visualize``: the map as DOT, or drawn by Graphviz as SVG or PNG."""
    edges = settings.query.selection.select(_load("visualize", settings.query).edges)
    dot = render_dot(edges, settings.title, slow_ms=settings.slow_ms)
    if settings.drawing == "dot":
        settings.output.write_text(dot)
        return
    from sinks.maps.graphviz import render_graph

    settings.output.write_bytes(render_graph(dot, settings.drawing))


@click.command()
@_map_options
@click.option(
    "--transport",
    type=click.Choice(["stdio", "http"]),
    default="stdio",
    show_default=True,
    help="stdio for an assistant that starts callmap; http for streamable HTTP.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="http: listen here.")
@click.option("--port", default=8765, show_default=True, help="http: the port.")
@click.option(
    "--refresh", default=30.0, show_default=True, help="Seconds a read of the map is reused."
)
@_guard
def mcp(query: MapQuery, transport: str, host: str, port: int, refresh: float) -> None:
    """Serve the map to AI assistants over the Model Context Protocol (read-only)."""
    try:
        from sinks.maps.mcpserver import serve
    except ImportError as exc:
        click.echo(f"callmap mcp needs the MCP SDK: pip install 'callmap[mcp]' ({exc})", err=True)
        raise SystemExit(os.EX_UNAVAILABLE) from exc
    serve(McpSettings(query, transport, host, port, refresh))


@click.command()
@_map_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen on this address.")
@click.option("--port", default=8080, show_default=True, help="The port.")
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Every request must carry the token in this file (or env CALLMAP_SERVE_TOKEN).",
)
@click.option(
    "--refresh",
    default=30.0,
    show_default=True,
    help="Seconds between reads of a sink's store (--from other than kafka) and of identities.",
)
@_slow_ms_option
@_guard
def serve(
    query: MapQuery,
    host: str,
    port: int,
    token_file: Path | None,
    refresh: float,
    slow_ms: float,
) -> None:
    """Serve the map, live, as a web page: filters, grouping, what changed, policies.

    Read-only; it listens on loopback unless --host says otherwise.
    """
    from sinks.maps.webmap import serve as serve_map

    token = token_file.read_text().strip() if token_file else os.environ.get("CALLMAP_SERVE_TOKEN")
    if token is not None and not token:
        raise click.BadParameter("the token is empty", param_hint="--token-file")
    if token is None and host not in ("127.0.0.1", "::1", "localhost"):
        click.echo(
            f"warning: serving the map on {host} with no token: anyone who reaches it can read it",
            err=True,
        )
    asyncio.run(serve_map(ServeSettings(query, host, port, token, refresh, slow_ms)))


@click.command()
@metrics_port_option(9813)
@click.option(
    "--address",
    envvar="CALLMAP_METRICS_ADDRESS",
    help="Listen on this address [every address] (env CALLMAP_METRICS_ADDRESS).",
)
@click.option(
    "--max-series",
    default=DEFAULT_MAX_SERIES,
    show_default=True,
    help="At most this many edge series; the least sighted beyond are counted, not shown.",
)
@click.option("--cluster", multiple=True, help="Only edges with a side in this cluster (repeat).")
@click.option(
    "--global",
    "global_edges",
    is_flag=True,
    help="Follow the hub's global edges (callmap aggregate) instead of a cluster's.",
)
@_guard
def metrics(
    metrics_port: int,
    address: str | None,
    max_series: int,
    cluster: tuple[str, ...],
    global_edges: bool,
) -> None:
    """Serve the map to Prometheus: series per edge, as Grafana's service graph reads them."""
    from sinks.maps.exporter import export

    settings = MetricsSettings(
        load_settings().kafka, metrics_port, address, max_series, frozenset(cluster), global_edges
    )
    asyncio.run(export(settings))
