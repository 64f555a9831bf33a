"""``callmap lab``: a real multi-pod network on one machine, and its ground truth.

- ``lab up TOPOLOGY``: build it and start the calls; returns when they all
  work (``--hold``: only ``before_capture`` calls until ``lab go``;
  ``--foreground``: also run the churn, then stay until Ctrl-C and tear down;
  ``--kubernetes``: also register it in a Kubernetes API server of its own);
- ``lab go NAME`` releases held calls; ``lab churn NAME`` runs the churn;
- ``lab status NAME``: pods and how their calls fare;
- ``lab down NAME`` (or ``--all``): remove everything, also after a crash
  (a multi-cluster topology's file: every cluster's lab);
- ``lab truth TOPOLOGY``: the expected edges; ``lab plan TOPOLOGY``: addresses;
- ``lab run TOPOLOGY``: the whole pipeline on it, compared with the truth
  (``--on cluster``: on the development cluster, with a truth of its own).

NAME may also be a topology file (its ``name`` is used).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from lab.addressing import Plan, plan
from lab.errors import LabError
from lab.multitopology import is_multi, load_multi, parse_multi, read_document
from lab.multitruth import global_truth
from lab.state import default_state_dir, load_state
from lab.topology import load_topology
from lab.truth import expected_edges

_kubernetes = click.option(
    "--kubernetes",
    is_flag=True,
    help="Also run a Kubernetes API server for the lab and register its nodes, workloads, "
    "pods, services and EndpointSlices there (needs `callmap dev kube fetch` once).",
)

_state_dir = click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the lab keeps its files [default: <callmap cache>/lab/<name>].",
)


def _name(value: str) -> str:
    """A lab name, or the name inside a topology file."""
    if value.endswith((".yaml", ".yml")) or Path(value).is_file():
        return load_topology(value).name
    return value


def _names(value: str) -> list[str]:
    """The labs a NAME argument means: one, or each cluster's of a multi-cluster file."""
    if Path(value).is_file() and is_multi(document := read_document(value)):
        return [member.name for member in parse_multi(document, value).members.values()]
    return [_name(value)]


def _fail(exc: LabError) -> None:
    click.echo(f"callmap lab: {exc}", err=True)
    sys.exit(1)


@click.group()
def lab() -> None:
    """A real multi-pod network in network namespaces, and its true edges."""


@lab.command()
@click.argument("topology", type=click.Path(exists=True, dir_okay=False))
@_state_dir
@click.option("--hold", is_flag=True, help="Run only before_capture calls until `lab go`.")
@click.option("--foreground", is_flag=True, help="Run the churn, stay until Ctrl-C, tear down.")
@click.option("--timeout", default=45.0, show_default=True, help="Seconds to wait for readiness.")
@click.option("--dns-log", is_flag=True, help="Log every DNS query to <state dir>/dns/.")
@_kubernetes
def up(
    topology: str,
    state_dir: Path | None,
    hold: bool,
    foreground: bool,
    timeout: float,
    dns_log: bool,
    kubernetes: bool,
) -> None:
    """Build the TOPOLOGY's network and start its calls."""
    from lab.runtime import up as bring_up

    if hold and foreground:
        raise click.UsageError("--foreground runs the churn at once; it cannot --hold")
    try:
        state = bring_up(
            topology,
            state_dir,
            hold=hold,
            timeout=timeout,
            dns_log=dns_log,
            kubernetes=kubernetes,
        )
    except LabError as exc:
        _fail(exc)
        return
    click.echo(f"lab {state.name} is up: {len(state.pods)} pods on {len(state.nodes)} nodes")
    for node in state.nodes:
        click.echo(f"  node {node.name}: netns {node.netns}, {len(node.pod_netns)} pod namespaces")
    click.echo(f"  DNS: {', '.join(state.dns.service_ips)} (pod {state.dns.pod})")
    click.echo(f"  inventory: {state.inventory}")
    if state.kube is not None:
        click.echo(f"  Kubernetes API: {state.kube.server}")
        click.echo(f"    export KUBECONFIG={state.kube.kubeconfig}")
    click.echo(f"  state: {Path(state.state_dir) / 'lab.json'}")
    if hold:
        click.echo(f"  calls held: run `callmap lab go {state.name}` to release them")
    if foreground:
        _foreground(Path(state.state_dir), state.name)


def _foreground(state_dir: Path, name: str) -> None:
    from lab.churn import run_churn
    from lab.teardown import down as tear_down

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_churn(
                state_dir,
                sleep=stopping.wait,
                on_step=lambda s: click.echo(
                    f"churn: {s.victim.key} deleted"
                    + (f", {s.replacement.key} holds its IPs" if s.replacement else "")
                ),
            )
            click.echo("running; Ctrl-C tears the lab down")
            stopping.wait()
    finally:
        click.echo(str(tear_down(name, state_dir)))


@lab.command()
@click.argument("name", required=False)
@_state_dir
@click.option("--all", "every", is_flag=True, help="Every lab on this machine.")
def down(name: str | None, state_dir: Path | None, every: bool) -> None:
    """Remove lab NAME (or a topology's lab): namespaces, processes, files."""
    from lab.teardown import down as tear_down
    from lab.teardown import leftover_labs

    if every == (name is not None):
        raise click.UsageError("give a lab NAME or --all")
    names = leftover_labs() if every else _names(name or "")
    if every or len(names) > 1:
        state_dir = None  # each lab's own
    for lab_name in names:
        click.echo(str(tear_down(lab_name, state_dir)))
    if every and not names:
        click.echo("no labs on this machine")


@lab.command()
@click.argument("name")
@_state_dir
def go(name: str, state_dir: Path | None) -> None:
    """Release the calls a `lab up --hold` held back."""
    from lab.runtime import release

    try:
        state = release(state_dir or default_state_dir(_name(name)))
    except LabError as exc:
        _fail(exc)
        return
    click.echo(f"lab {state.name}: calls released")


@lab.command()
@click.argument("name")
@_state_dir
def churn(name: str, state_dir: Path | None) -> None:
    """Run the topology's churn on schedule (seconds after the calls were released)."""
    from lab.churn import run_churn

    try:
        run_churn(
            state_dir or default_state_dir(_name(name)),
            on_step=lambda s: click.echo(f"churn: {s.victim.key} deleted"),
        )
    except LabError as exc:
        _fail(exc)


@lab.command()
@click.argument("name")
@_state_dir
@click.option("--json", "as_json", is_flag=True, help="The callers' status as JSON.")
def status(name: str, state_dir: Path | None, as_json: bool) -> None:
    """Pods of a running lab and how their calls fare; exit 1 if it is not up."""
    from lab.runtime import call_report

    try:
        state = load_state(state_dir or default_state_dir(_name(name)))
    except LabError as exc:
        _fail(exc)
        return
    reports = call_report(state)
    if as_json:
        click.echo(json.dumps({"lab": state.name, "pods": reports}, indent=2))
        return
    click.echo(f"lab {state.name}: {len(state.live_pods())} live pods, state {state.state_dir}")
    if state.kube is not None:
        click.echo(f"  Kubernetes API {state.kube.server}, kubeconfig {state.kube.kubeconfig}")
    for report in reports:
        click.echo(f"  {report['pod']}: {'listening' if report.get('listening') else 'DOWN'}")
        for call in report.get("calls", []):
            click.echo(
                f"    -> {call['to']}:{call['port']}  ok {call['ok']}  failed {call['failed']}"
            )


@lab.command()
@click.argument("topology", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="{edges, tolerated, ports}: JSON lists.")
def truth(topology: str, as_json: bool) -> None:
    """Print the edges a correct pipeline reports for TOPOLOGY.

    For a multi-cluster topology: the global map's edges, named with their clusters.
    """
    try:
        if is_multi(read_document(topology)):
            multi = load_multi(topology)
            result = global_truth(multi, multi.plans())
        else:
            result = expected_edges(plan(load_topology(topology)))
    except LabError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
        return
    for edge in sorted(result.edges):
        click.echo(str(edge))


@lab.command(name="plan")
@click.argument("topology", type=click.Path(exists=True, dir_okay=False))
def show_plan(topology: str) -> None:
    """Print the pods, addresses and services the lab would create (no root needed)."""
    layouts: list[tuple[str | None, Plan]]
    try:
        if is_multi(read_document(topology)):
            layouts = [(name, p) for name, p in load_multi(topology).plans().items()]
        else:
            layouts = [(None, plan(load_topology(topology)))]
    except LabError as exc:
        _fail(exc)
        return
    for cluster, layout in layouts:
        if cluster is not None:
            click.echo(f"cluster {cluster} (lab {layout.topology.name}):")
        _print_plan(layout)


def _print_plan(layout: Plan) -> None:
    for node in layout.nodes:
        click.echo(
            f"node {node.name}: {', '.join(node.ips)}, pods {node.pod_cidr_v4}, netns {node.netns}"
        )
    for pod in layout.all_pods:
        later = "" if pod in layout.pods else "  (created by churn)"
        click.echo(f"pod {pod.key} [{pod.ref}] on {pod.node}: {', '.join(pod.ips)}{later}")
    for service in layout.services:
        target = service.external_name or ", ".join(service.cluster_ips) or "headless"
        exported = ", exported" if service.exported else ""
        click.echo(f"service {service.key} ({service.type}{exported}): {target}")
    for imported in layout.imports:
        backends = ", ".join(ip for _, ip in imported.service.backends)
        click.echo(f"clusterset {imported.name}: {imported.ip} -> {backends}")


@lab.command(name="run")
@click.argument("topology", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_state_dir
@click.option("--seconds", default=180.0, show_default=True, help="Give up after this long.")
@click.option(
    "--streams-delay",
    default=0.0,
    show_default=True,
    help="Start the stream app this many seconds late (it must catch up).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the run's cluster name and comparison as JSON."
)
@_kubernetes
@click.option(
    "--tcp-info",
    is_flag=True,
    help="Run capture with --tcp-info: socket tables through sock_diag, with round-trip "
    "times; the report lists the edges that counted some.",
)
@click.option(
    "--on",
    "on",
    type=click.Choice(["netns", "cluster"]),
    default="netns",
    show_default=True,
    help="netns: the lab's own network namespaces; cluster: the development cluster "
    "(`callmap dev cluster`), compared with a truth made from the pods' call logs.",
)
def run_command(
    topology: Path,
    state_dir: Path | None,
    seconds: float,
    streams_delay: float,
    as_json: bool,
    kubernetes: bool,
    tcp_info: bool,
    on: str,
) -> None:
    """Run the whole pipeline on a lab and compare its map with the truth.

    With --kubernetes the watcher lists and watches the lab's API server
    instead of reading its inventory file. Exit status 0 only on a perfect match.
    """
    from lab.pipeline import RunOptions, run

    logging.getLogger("aiokafka").setLevel(logging.WARNING)  # keep the progress readable

    def progress(line: str) -> None:
        click.echo(line, err=True)

    if on == "cluster" and (kubernetes or streams_delay or tcp_info):
        raise click.UsageError("--kubernetes, --streams-delay and --tcp-info are for the netns lab")
    options = RunOptions(
        seconds=seconds,
        streams_delay=streams_delay,
        state_dir=state_dir,
        kubernetes=kubernetes,
        tcp_info=tcp_info,
    )
    try:
        if on == "cluster":
            from lab.clusterrun import run_on_cluster

            result = run_on_cluster(topology, options, progress)
            comparison, report = result.comparison, result.as_json()
            text, perfect = comparison.as_text(), comparison.perfect
        elif is_multi(read_document(topology)):
            from lab.multirun import run_multi

            multi_run = run_multi(topology, options, progress)
            report, text, perfect = multi_run.as_json(), multi_run.as_text(), multi_run.perfect
        else:
            lab_run = run(topology, options, progress)
            report, text, perfect = lab_run.as_json(), lab_run.as_text(), lab_run.perfect
    except LabError as exc:
        _fail(exc)
        return
    if as_json:  # the run's cluster name finds its edges, and its logs in the callmap cache
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(text)
    sys.exit(0 if perfect else 1)
