"""A container's command line, parsed by the real ``callmap`` command as the pod would run it.

:func:`parse_command` walks ``callmap``'s groups down to the command that would
run and lets click parse its options strictly (unknown options, missing
required ones, values of the wrong type and files that do not exist are all
errors), without invoking anything. Paths are checked against a stand-in for
the container's file system: :class:`FileSystem` lays out what the pod would
have mounted (Secret keys as files, empty directories for emptyDirs and
claims) under a temporary directory, and arguments under a mount point are
read from there.

:func:`settings_variables` names every ``CALLMAP_*`` variable callmap reads,
so a variable a manifest sets that nothing reads is caught as well.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from callmap.cli import cli
from callmap.config import load_settings
from callmap.errors import ConfigError


@dataclass
class FileSystem:
    """Mount points of a container, laid out under ``root`` (a temporary directory)."""

    root: Path
    mounts: dict[str, Path] = field(default_factory=dict)

    def directory(self, mount_path: str) -> None:
        """An empty directory (an emptyDir, a claim, a tmpfs, a named volume)."""
        target = self.root / mount_path.lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        self.mounts[mount_path] = target

    def files(self, mount_path: str, names: Sequence[str]) -> None:
        """A Secret: one file per projected key, each holding a placeholder value."""
        self.directory(mount_path)
        for name in names:
            (self.mounts[mount_path] / name).write_text("placeholder\n")

    def bind(self, mount_path: str, source: Path) -> None:
        """A bind mount of a real path (compose's ``./deploy/compose:/etc/callmap``)."""
        self.mounts[mount_path] = source

    def translate(self, value: str) -> str:
        """``value`` as seen from outside the container when it names a mounted path."""
        for mount_path, target in sorted(self.mounts.items(), key=lambda m: -len(m[0])):
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                return str(target) + value[len(mount_path.rstrip("/")) :]
        return value


def kubernetes_file_system(
    root: Path, pod_spec: Mapping[str, Any], container: Mapping[str, Any]
) -> FileSystem:
    """The file system a Kubernetes container sees through its volume mounts."""
    volumes = {volume["name"]: volume for volume in pod_spec.get("volumes", [])}
    files = FileSystem(root)
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "secret" in volume:
            items = volume["secret"].get("items")
            assert items, f"secret volume {mount['name']} projects no keys by name"
            files.files(mount["mountPath"], [item["path"] for item in items])
        else:
            files.directory(mount["mountPath"])
    return files


@contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Exactly ``variables`` as the process's CALLMAP_* environment, for the block."""
    saved = {name: value for name, value in os.environ.items() if name.startswith("CALLMAP_")}
    for name in saved:
        del os.environ[name]
    os.environ.update(variables)
    try:
        yield
    finally:
        for name in variables:
            os.environ.pop(name, None)
        os.environ.update(saved)


@dataclass(frozen=True)
class ParsedCommand:
    """What ``callmap ARGS`` resolves to: the command path, its parsed options, their env vars."""

    path: tuple[str, ...]
    params: dict[str, Any]
    envvars: frozenset[str]


def parse_command(
    args: Sequence[str], env: Mapping[str, str], files: FileSystem | None = None
) -> ParsedCommand:
    """Parse ``callmap ARGS`` as the container would run it; click errors propagate."""
    translate = files.translate if files else (lambda value: value)
    rest = [translate(arg) for arg in args]
    names = ["callmap"]
    command: click.Command = cli
    context = click.Context(cli, info_name="callmap")
    envvars = _envvars(cli)
    with environment({name: translate(value) for name, value in env.items()}):
        while isinstance(command, click.Group):
            name, found, rest = command.resolve_command(context, rest)
            assert name is not None and found is not None, f"no subcommand in {list(args)}"
            names.append(name)
            envvars |= _envvars(found)
            if isinstance(found, click.Group):
                context = click.Context(found, info_name=name, parent=context)
            command = found
        leaf = command.make_context(names[-1], list(rest), parent=context)
    return ParsedCommand(tuple(names), dict(leaf.params), frozenset(envvars))


def _envvars(command: click.Command) -> set[str]:
    found: set[str] = set()
    for param in command.params:
        envvar = getattr(param, "envvar", None)
        if isinstance(envvar, str):
            found.add(envvar)
        elif envvar:
            found.update(envvar)
    return found


class _Recorder(dict[str, str]):
    """An environment that remembers every name it was asked about."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)


def settings_variables() -> frozenset[str]:
    """Every variable :func:`callmap.config.load_settings` reads, asked of a recording environment.

    Run twice, once as plain text and once with SASL, so that the branches that
    read the SASL settings and their ``_FILE`` variants are taken too.
    """
    asked: set[str] = set()
    for values in (
        {},
        {
            "CALLMAP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CALLMAP_KAFKA_SASL_USERNAME": "u",
            "CALLMAP_KAFKA_SASL_PASSWORD": "p",
        },
        {"CALLMAP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
    ):
        recorder = _Recorder(values)
        with contextlib.suppress(ConfigError):  # the last lacks credentials: it reads every _FILE
            load_settings(recorder)
        asked |= recorder.asked
    return frozenset(name for name in asked if name.startswith("CALLMAP_"))
