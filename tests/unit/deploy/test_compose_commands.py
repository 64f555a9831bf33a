"""docker-compose.yml stays consistent with the code it runs."""

from __future__ import annotations

from pathlib import Path

import yaml

from callmap.cli import COMMANDS, PLANNED
from devtools.kafka import KAFKA_VERSION

COMPOSE = Path(__file__).resolve().parents[3] / "docker-compose.yml"


def test_compose_runs_the_same_kafka_version_as_the_tests() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_every_callmap_service_runs_a_known_subcommand() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    commands = {name: s["command"][0] for name, s in services.items() if "command" in s}
    assert commands and all(c in COMMANDS or c in PLANNED for c in commands.values()), commands
    assert all(
        s["environment"]["CALLMAP_KAFKA_BOOTSTRAP"] for n, s in services.items() if n != "kafka"
    )
