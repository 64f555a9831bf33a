"""``callmap list``, ``callmap export`` and ``callmap visualize``: the map for people.

All three read the map from ``--from`` (see :mod:`sinks.maps.readers`), keep what
the filters select (see :mod:`sinks.maps.filters`) and write to stdout or ``-o``.
Warnings (what a format cannot express, records that did not decode) go to
stderr, escaped, so stdout stays a clean document.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

from callmap.config import load_settings
from callmap.errors import CallmapError
from sinks.escape import terminal
from sinks.maps.filters import MapFilter, parse_since
from sinks.maps.formats.cilium import CiliumOptions, cilium_policies
from sinks.maps.formats.documents import render
from sinks.maps.formats.dot import render_dot
from sinks.maps.formats.intents import client_intents
from sinks.maps.formats.labels import DEFAULT_LABEL_KEY, LabelBook
from sinks.maps.formats.listing import render_json, render_text
from sinks.maps.formats.netpol import NetpolOptions, network_policies
from sinks.maps.formats.policy import Export, PortMap, single_cluster
from sinks.maps.formats.tabular import edges_csv, edges_json
from sinks.maps.output import write_split
from sinks.maps.readers import MapData, Source, load_map, parse_source

FuncT = Callable[..., Any]


def _map_options(function: Callable[..., None]) -> FuncT:
    """The options every map command shares, given to it as one :class:`MapQuery` (first
    argument); the command's own options follow by name."""
    decorators = [
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
        click.option("--cluster", multiple=True, help="Only edges of this cluster (repeat)."),
        click.option("--since", help="Only edges seen since: 30m, 24h, 7d or an ISO 8601 time."),
        click.option("--include-expired", is_flag=True, help="Keep expired edges too."),
    ]

    def command(
        *,
        source: str,
        namespace: tuple[str, ...],
        client: tuple[str, ...],
        server: tuple[str, ...],
        cluster: tuple[str, ...],
        since: str | None,
        include_expired: bool,
        **own: Any,
    ) -> None:
        selection = MapFilter(
            namespaces=frozenset(namespace),
            clients=frozenset(client),
            servers=frozenset(server),
            clusters=frozenset(cluster),
            since=parse_since(since, time.time()) if since else None,
            include_expired=include_expired,
        )
        function(MapQuery(parse_source(source), selection), **own)

    functools.update_wrapper(command, function)
    command = _guard(command)
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


@dataclass(frozen=True, slots=True)
class MapQuery:
    """What every map command is asked: where the map is, and which edges to keep."""

    source: Source
    """Where the edges are read (``--from``)."""
    selection: MapFilter
    """Which of them count (``--namespace``, ``--client``, ...)."""


def _warn(command: str, text: str) -> None:
    click.echo(f"callmap {command}: warning: {terminal(text)}", err=True)


def _load(command: str, query: MapQuery, identities: bool = False) -> MapData:
    data = asyncio.run(load_map(query.source, load_settings().kafka, identities=identities))
    for problem in data.problems[:20]:
        _warn(command, problem)
    if len(data.problems) > 20:
        _warn(command, f"{len(data.problems) - 20} more records did not decode")
    return data


def _output(data: str | bytes, output: Path | None) -> None:
    raw = data.encode() if isinstance(data, str) else data
    if output is None:
        sys.stdout.buffer.write(raw)
        sys.stdout.flush()
    else:
        output.write_bytes(raw)


def _guard(function: FuncT) -> FuncT:
    """callmap's own errors as a one-line message and exit status 1."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (CallmapError, ValueError, OSError, yaml.YAMLError) as exc:
            raise click.ClickException(terminal(str(exc))) from exc

    return wrapper


@click.command("list")
@_map_options
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_guard
def list_command(query: MapQuery, output: str) -> None:
    """Print who calls whom: "X in namespace Y calls:" and its servers."""
    edges = query.selection.select(_load("list", query).edges)
    _output(render_json(edges) if output == "json" else render_text(edges), None)


def _labels(labels: str | None, key: str, data: MapData, cluster: str | None) -> LabelBook:
    book = LabelBook(convention_key=key)
    pods = [pod for pod in data.pods or () if pod.cluster == cluster]
    if pods:
        book = LabelBook.from_pods(pods, convention_key=key)
    if labels:
        document = yaml.safe_load(Path(labels).read_text()) or {}
        if not isinstance(document, dict):
            raise ValueError(f"{labels}: expected a mapping of namespace/workload")
        book = LabelBook.from_mapping(document, convention_key=key).over(book)
    return book


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
    type=click.Choice(["intents", "networkpolicy", "cilium", "json", "csv"]),
    required=True,
    help="What to write.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="A file, or a directory (existing, or ending in /) for one file per object.",
)
@click.option("--json", "as_json", is_flag=True, help="Kubernetes objects as JSON, not YAML.")
@click.option("--egress", is_flag=True, help="networkpolicy: also per-client egress policies.")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False), help="Pod labels file.")
@click.option("--label-key", default=DEFAULT_LABEL_KEY, show_default=True, help="Label convention.")
@click.option("--identities/--no-identities", default=True, help="Read pod and service identities.")
@click.option("--dns-namespace", default="kube-system", show_default=True)
@click.option("--dns-label", multiple=True, help="DNS pods' label KEY=VALUE [k8s-app=kube-dns].")
@_guard
def export(
    query: MapQuery,
    fmt: str,
    output: Path | None,
    as_json: bool,
    egress: bool,
    labels: str | None,
    label_key: str,
    identities: bool,
    dns_namespace: str,
    dns_label: tuple[str, ...],
) -> None:
    """Export the map as ClientIntents, NetworkPolicies, CiliumNetworkPolicies, JSON or CSV."""
    selection = query.selection
    policies = fmt in ("networkpolicy", "cilium")
    data = _load("export", query, identities=policies and identities)
    if fmt in ("json", "csv"):
        edges = selection.select(data.edges)
        _output(edges_json(edges) if fmt == "json" else edges_csv(edges), output)
        return
    dns = _dns_labels(dns_label)
    ports = PortMap(data.services or ())
    edges = [edge for edge in data.edges if selection.live(edge)]
    cluster = single_cluster(edges)
    result: Export
    if fmt == "intents":
        result = client_intents(edges, selection)
    elif fmt == "networkpolicy":
        netpol = NetpolOptions(egress=egress, dns_namespace=dns_namespace, dns_labels=dns)
        book = _labels(labels, label_key, data, cluster)
        result = network_policies(edges, book, selection, netpol, ports)
    else:
        cilium = CiliumOptions(dns_namespace=dns_namespace, dns_labels=dns)
        book = _labels(labels, label_key, data, cluster)
        result = cilium_policies(edges, book, selection, cilium, ports)
    for warning in dict.fromkeys(result.warnings):
        _warn("export", warning)
    encoding = "json" if as_json else "yaml"
    if output is not None and (output.is_dir() or str(output).endswith("/")):
        for path in write_split(result.documents, output, encoding):
            click.echo(f"wrote {path}", err=True)
    else:
        _output(render(result.documents, encoding), output)


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
@_guard
def visualize(query: MapQuery, output: Path, title: str) -> None:
    """Draw the map with Graphviz: namespaces as clusters, externals apart."""
    fmt = output.suffix.lower().lstrip(".")
    if fmt not in ("svg", "png", "dot", "gv"):
        raise click.BadParameter("the file name must end in .svg, .png or .dot", param_hint="-o")
    dot = render_dot(query.selection.select(_load("visualize", query).edges), title)
    if fmt in ("dot", "gv"):
        output.write_text(dot)
        return
    from sinks.maps.graphviz import render_graph

    output.write_bytes(render_graph(dot, fmt))
