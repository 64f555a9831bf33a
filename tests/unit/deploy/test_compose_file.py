"""docker-compose.yml runs real commands, least-privileged, and prints the map its sink wrote.

(tests/unit/deploy/test_compose_commands.py checks the Kafka image against the tests' broker.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.podcli import FileSystem, parse_command

from callmap.inventory import load_inventory

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
CALLMAP = {name: s for name, s in SERVICES.items() if s.get("image") == "callmap:dev"}


def file_system(service: dict[str, Any], root: Path) -> FileSystem:
    """What the service's container sees: bind mounts are the real paths, the rest is empty."""
    files = FileSystem(root)
    for entry in service.get("tmpfs", []):
        files.directory(entry.split(":")[0])
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            files.bind(target, ROOT / source)
        elif source.startswith(("/", "${")):  # the host's /proc, the user's kubeconfig
            files.files(str(Path(target).parent), [Path(target).name])
        else:
            files.directory(target)
    return files


def test_the_stack_is_the_whole_pipeline_on_one_host() -> None:
    commands = {name: s.get("command", [])[:2] for name, s in CALLMAP.items()}
    assert commands["capture"] == ["capture", "run"]
    assert commands["watch"][0] == "watch" and commands["streams"] == ["streams", "worker"]
    assert commands["sink"] == ["sink", "sqlite"] and commands["topics"] == ["topics", "create"]
    default = {name for name, s in SERVICES.items() if "profiles" not in s}
    assert default == {"kafka", "topics", "capture", "watch", "streams", "sink"}


@pytest.mark.parametrize("name", sorted(n for n, s in CALLMAP.items() if "command" in s))
def test_every_service_runs_a_real_command(name: str, tmp_path: Path) -> None:
    service = CALLMAP[name]
    environment = {k: str(v) for k, v in service["environment"].items()}
    parse_command(service["command"], environment, file_system(service, tmp_path))


def test_the_map_service_lists_what_the_sqlite_sink_writes() -> None:
    sink, reader = CALLMAP["sink"], CALLMAP["map"]
    written = parse_command(sink["command"], {}).params["path"]
    assert parse_command(reader["command"], {}).params["source"] == f"sqlite:///{written}"
    volume = {v.split(":")[0] for v in sink["volumes"]}
    assert volume == {v.split(":")[0] for v in reader["volumes"]} == {"callmap-data"}


def test_the_capture_agent_is_the_only_root_service_and_has_two_capabilities() -> None:
    capture = CALLMAP["capture"]
    assert capture["user"] == "0:0" and capture["network_mode"] == "host"
    assert capture["cap_drop"] == ["ALL"] and capture["cap_add"] == ["NET_RAW", "SETUID", "SETGID"]
    assert capture["volumes"] == ["/proc:/host/proc:ro"]
    assert "privileged" not in capture and capture["read_only"] is True
    for name, service in CALLMAP.items():
        if name != "capture":
            assert not service["user"].startswith("0"), name
            assert service["cap_drop"] == ["ALL"] and "cap_add" not in service, name
            assert service["read_only"] is True, name
            assert "no-new-privileges:true" in service["security_opt"], name


def test_host_network_services_reach_kafka_on_its_published_host_listener() -> None:
    kafka = SERVICES["kafka"]
    advertised = kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    host_listener = next(a for a in advertised.split(",") if a.startswith("HOST://"))
    address = host_listener.removeprefix("HOST://")
    assert f"{address}:{address.rsplit(':', 1)[1]}" in kafka["ports"]
    for name, service in CALLMAP.items():
        bootstrap = service["environment"]["CALLMAP_KAFKA_BOOTSTRAP"]
        expected = address if service.get("network_mode") == "host" else "kafka:9092"
        assert bootstrap == expected, name


def test_the_inventory_is_valid_and_its_directory_is_mounted(tmp_path: Path) -> None:
    watch = CALLMAP["watch"]
    (volume,) = watch["volumes"]
    source, _, mode = volume.split(":")
    assert mode == "ro" and (ROOT / source).is_dir()  # a directory: atomic replaces are seen
    path = parse_command(watch["command"], {}, file_system(watch, tmp_path)).params["inventory"]
    assert path.parent == ROOT / source  # the file the watcher opens is the one in the repository
    assert load_inventory(path.read_text()).cluster == "compose"


def test_the_kubeconfig_watcher_is_an_alternative_behind_a_profile() -> None:
    kube = CALLMAP["watch-kube"]
    assert kube["profiles"] == ["kube"]
    assert "--no-leader-election" in kube["command"]
