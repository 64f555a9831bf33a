"""``callmap demo``: the microservices shop, mapped for real, end to end.

Starts the development Kafka broker (unless ``CALLMAP_KAFKA_BOOTSTRAP`` is
set), brings up the bundled shop topology as a lab, runs capture on each lab
node, the watcher (on the lab's inventory file, or with ``--kubernetes`` on a
Kubernetes API server of the lab's own), a stream worker and the SQLite sink, shows
progress while the map fills, prints ``callmap list`` once the map is
complete, writes ``map.svg``, compares the map with the truth, and tears
the lab and the pipeline down. The development broker it started stays up
for the next run (``callmap dev kafka stop`` stops it). Needs root (network
namespaces).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import click
from rich.console import Console

from lab.errors import LabError
from lab.pipeline import RunOptions, run

SHOP = Path(__file__).parent / "topologies" / "shop.yaml"

console = Console(stderr=True)


@click.command()
@click.option(
    "--topology",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=SHOP,
    show_default="the bundled shop",
    help="The lab to map.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("map.svg"),
    show_default=True,
    help="Where to draw the map.",
)
@click.option("--seconds", default=240.0, show_default=True, help="Give up after this long.")
@click.option(
    "--kubernetes",
    is_flag=True,
    help="Register the lab in a Kubernetes API server of its own and watch that "
    "(needs `callmap dev kube fetch` once).",
)
def demo(topology: Path, output: Path, seconds: float, kubernetes: bool) -> None:
    """Map a real multi-pod network: the whole pipeline on one machine."""
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    if os.geteuid() != 0:
        raise click.ClickException("the demo builds network namespaces: run it as root")
    with tempfile.TemporaryDirectory(prefix="callmap-demo-") as tmp:
        database = Path(tmp) / "map.db"
        options = RunOptions(seconds=seconds, sqlite=database, kubernetes=kubernetes)
        what = "the lab and its Kubernetes API server" if kubernetes else "the lab"
        with console.status(f"building {what} and starting callmap ...") as status:
            try:
                lab_run = run(topology, options, lambda line: status.update(line))
            except LabError as exc:
                raise click.ClickException(str(exc)) from None
        source = ["--from", f"sqlite:///{database}", "--cluster", lab_run.cluster]
        listing = _callmap("list", *source)
        click.echo(listing.stdout, nl=False)
        drawn = _callmap("visualize", "-o", str(output), *source)
        if drawn.returncode == 0:
            console.print(f"map drawn to {output}")
        else:
            console.print(f"[red]visualize failed:[/] {drawn.stderr.strip()}")
        console.print(lab_run.as_text())
    sys.exit(0 if lab_run.perfect and listing.returncode == 0 else 1)


def _callmap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callmap", *args], capture_output=True, text=True, check=False
    )
