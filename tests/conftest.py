"""Fixtures shared by every test: a Kafka broker for each test process, how
`make test` shares the tests between its processes, scapy kept off the
host's network, and hypothesis imported whole before any test runs.

Integration tests never mock Kafka. The broker comes from, in order:
``CALLMAP_KAFKA_BOOTSTRAP`` (an external broker you run), testcontainers'
Apache Kafka image when a Docker engine answers, or a local KRaft broker that
callmap's own ``devkafka`` module starts from Maven Central jars.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.kafkakit import broker_settings
from helpers.wiresamples import sample_records

from callmap.config import Settings
from callmap.wire import Record
from devtools.kafka import KAFKA_VERSION, DevBroker
from devtools.process import free_port

# The image the compose file uses too; kept at the same version as the jars.
KAFKA_IMAGE = f"apache/kafka:{KAFKA_VERSION}"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Import, before any test runs, what hypothesis would import in the middle of one.

    pytest rewrites the asserts of plugin packages (hypothesis is one) as they are
    imported, through ``ast.parse``, and with ``PYTHONDONTWRITEBYTECODE`` set (as
    on this machine) it does so in every run. Python 3.11 before 3.11.8 keeps the
    AST builder's recursion depth in state that threads share (CPython
    gh-106905): building an AST in one thread while another does (a lazy
    import's rewrite; a traceback, which 3.11 parses for its error markers) can
    fail with ``SystemError: AST constructor recursion depth mismatch``. A
    clean-clone run failed so on 2026-12-07, a unit test importing the
    strategy behind ``st.randoms()`` in a process whose earlier tests had left
    threads behind. Here, once the tests are collected, nothing else runs yet.
    (Not while conftest loads: some of these modules read hypothesis's storage
    as they load, which it warns about during a plugin's initialisation.)"""
    for name in ("hypothesis.strategies._internal", "hypothesis.internal.conjecture"):
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, f"{name}."):
            importlib.import_module(module.name)


@pytest.fixture(autouse=True)
def _no_neighbour_lookups() -> None:
    """Frames that tests build with scapy never ask the host's network for a MAC.

    An ``Ether()`` without ``dst`` makes scapy resolve the destination as the
    frame is built: an ARP request or an IPv6 neighbour solicitation on the
    host's own interface, then up to a second's wait for an answer that never
    comes (it made one property test of frames take 24 s). Tests send nothing
    outside loopback and their own namespaces, so scapy's resolvers are
    emptied, once its layers are loaded: such frames go to the broadcast
    address instead, which no decoder under test reads."""
    config = sys.modules.get("scapy.config")
    if config is not None:
        config.conf.neighbor.resolvers.clear()


def _docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def _kafka_container(port: int):  # type: ignore[no-untyped-def]
    """Apache Kafka's own image in KRaft mode, advertised on a fixed loopback port."""
    from testcontainers.core.container import DockerContainer

    settings = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://0.0.0.0:9092,CONTROLLER://localhost:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    }
    container = DockerContainer(KAFKA_IMAGE).with_bind_ports(9092, port)
    for name, value in settings.items():
        container = container.with_env(name, value)
    return container


# `make test` runs the tests in several processes (pytest-xdist), each with a broker
# of its own. A file's tests stay together in one process, in order (their module
# fixtures are shared). The tests that use this machine itself run one after
# another, one kind per process: the lab runs of tests/integration/lab/
# test_end_to_end.py (two runs of one topology would share their lab's names),
# the other labs, the other namespaces and packet capture, and the development
# cluster (its addresses are fixed). Labs and namespaces of different names do
# not meet (their address ranges live in namespaces of their own), so the kinds
# run side by side: at most two labs at once.
MACHINE_SCOPES = {
    "tests/integration/lab/test_end_to_end.py": "lab runs",
    "tests/integration/lab/": "labs",
    "tests/integration/callmap/": "netns",
    "tests/integration/capture/": "netns",
    "tests/integration/cluster/": "cluster",
    "tests/integration/devcluster/": "cluster",
}
FIRST_SCOPES = ("lab runs", "cluster", "labs", "netns")
"""The longest scopes (about 13, 11, 5 and 5 minutes of three processes' 19), handed
out first so that none of them starts late and keeps the run going after the others
end."""


def scope_of(nodeid: str) -> str:
    """Which tests run together, in one process: a file's, or all of one machine kind."""
    path = nodeid.split("::", 1)[0]
    for folder, scope in MACHINE_SCOPES.items():
        if path.startswith(folder):
            return scope
    return path


TIMELINE = os.environ.get("CALLMAP_TEST_TIMELINE")
"""A file to append each test's process, scope, start and duration to (read it with
``python tests/helpers/timeline.py FILE``): where a run's time goes."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    started = time.time()
    yield
    if TIMELINE:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        line = [worker, scope_of(item.nodeid), item.nodeid, started, time.time() - started]
        with open(TIMELINE, "a") as timeline:
            timeline.write(json.dumps(line) + "\n")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            for scope in reversed(FIRST_SCOPES):
                if scope in self.workqueue:
                    self.workqueue.move_to_end(scope, last=False)
            super()._assign_work_unit(node)

    return Scheduling(config, log)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a real Kafka broker, up for the whole test session."""
    external = os.environ.get("CALLMAP_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    if os.environ.get("CALLMAP_TEST_DOCKER", "auto") != "no" and _docker_engine_answers():
        from testcontainers.core.waiting_utils import wait_for_logs

        port = free_port()
        with _kafka_container(port) as container:
            wait_for_logs(container, "Kafka Server started", timeout=120)
            yield f"127.0.0.1:{port}"
        return
    broker = DevBroker(tmp_path_factory.mktemp("kafka"), port=free_port())
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def settings(kafka_bootstrap: str) -> Settings:
    """Settings for the test broker: one replica, few partitions (fast to create)."""
    return broker_settings(kafka_bootstrap)


@pytest.fixture
def samples() -> list[Record]:
    return sample_records()
