"""Apache Kafka's MirrorMaker 2 between local brokers, for development and tests.

MirrorMaker 2 is Kafka's own cluster-to-cluster replication (the
``connect-mirror`` jars, the same Kafka version as the dev broker, resolved
from Maven Central with Maven into the cache once). One instance runs in
dedicated mode and copies each source cluster's shared callmap topics
(:data:`callmap.wire.topics.SHARED_TOPICS`) to a hub under MirrorMaker's
default replication policy, ``<alias>.<topic>``: what ``callmap aggregate``
reads (the properties: :mod:`devtools.mirrorconfig`). Writes to the hub are
exactly-once by default: a reader with ``isolation.level=read_committed`` sees
no record twice, even after MirrorMaker was killed. Like
:class:`~devtools.kafka.DevBroker`, an instance keeps its files in a directory
of its own, and stopping only signals the process it started.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from callmap.errors import TemporaryError
from callmap.paths import cache_dir
from devtools.kafka import KAFKA_VERSION, LOG4J2_TEMPLATE, LOG4J_VERSION, DevKafkaError, kafka_home
from devtools.mirrorconfig import mirror_flows, mirror_properties
from devtools.process import PidFile, alive, free_port, locked

MAIN_CLASS = "org.apache.kafka.connect.mirror.MirrorMaker"

EXACTLY_ONCE = True
"""Whether a MirrorMaker writes to the hub in transactions unless told otherwise."""

# A Connect worker per flow in one small JVM: serial GC and C1 only start
# fastest on a two-core development machine.
_JVM_OPTIONS = ["-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.callmap.dev</groupId>
  <artifactId>mirror-runtime</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>connect-mirror</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""


def resolve_mirror_jars(version: str = KAFKA_VERSION) -> Path:
    """The directory with MirrorMaker 2's runtime jars, resolving them with Maven if needed.

    Kept apart from the broker's jars (their own directory and stamp), so a
    cache that holds the broker does not resolve it again.
    """
    home = kafka_home(version) / "mirror"
    libs = home / "libs"
    stamp = home / "resolved"
    if stamp.exists():
        return libs
    if shutil.which("mvn") is None:
        raise DevKafkaError("Maven (mvn) is needed to fetch MirrorMaker's jars; install it first")
    home.mkdir(parents=True, exist_ok=True)
    with locked(home / ".lock"):
        if stamp.exists():
            return libs
        (home / "pom.xml").write_text(_POM.format(kafka=version, log4j=LOG4J_VERSION))
        shutil.rmtree(libs, ignore_errors=True)
        command = [
            "mvn", "-B", "-q", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}", "-DincludeScope=runtime",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DevKafkaError(
                f"mvn could not resolve MirrorMaker {version}:\n{result.stdout[-4000:]}"
            )
        stamp.write_text(json.dumps(sorted(p.name for p in libs.glob("*.jar"))))
    return libs


@dataclass(frozen=True, slots=True)
class MirrorStatus:
    """What ``callmap dev mirror status`` reports about one MirrorMaker instance."""

    running: bool
    pid: int | None
    """The MirrorMaker process this machine's callmap started, if it still runs."""
    flows: list[tuple[str, str]]
    """(source alias, hub alias) of each flow it was last started with."""
    directory: Path
    """Where the instance keeps its properties, log and pid file."""


@dataclass(frozen=True, slots=True)
class DevMirror:
    """One MirrorMaker 2 instance copying ``sources`` into ``hub``."""

    directory: Path
    """The instance's own directory: properties, log and pid file."""
    sources: Mapping[str, str]
    """Source alias -> bootstrap address."""
    hub: tuple[str, str]
    """(hub alias, hub bootstrap address)."""
    exactly_once: bool = EXACTLY_ONCE
    """Transactional writes to the hub (see :func:`mirror_properties`)."""

    @classmethod
    def named(
        cls,
        name: str,
        sources: Mapping[str, str] | None = None,
        hub: tuple[str, str] = ("", ""),
        exactly_once: bool = EXACTLY_ONCE,
    ) -> DevMirror:
        """The instance ``callmap dev mirror --name NAME`` means."""
        return cls(cache_dir() / "kafka" / "mirrors" / name, sources or {}, hub, exactly_once)

    @property
    def _pid_file(self) -> PidFile:
        """``mirror.pid``: a pid counts while it runs MirrorMaker from this directory."""
        marks = (MAIN_CLASS.encode(), str(self.directory).encode())
        return PidFile(self.directory / "mirror.pid", marks)

    @property
    def log_file(self) -> Path:
        return self.directory / "mirror.log"

    @property
    def properties_file(self) -> Path:
        return self.directory / "mm2.properties"

    def running(self) -> bool:
        return self._pid_file.recorded() is not None

    def status(self) -> MirrorStatus:
        pid = self._pid_file.recorded()
        try:
            flows = mirror_flows(self.properties_file.read_text())
        except OSError:
            flows = []
        return MirrorStatus(pid is not None, pid, flows, self.directory)

    def start(self, settle: float = 2.0) -> int:
        """Start MirrorMaker unless it runs already; its pid.

        A MirrorMaker that runs with other flows is an error (stop it first),
        not silently kept. Mirroring begins some seconds after start-up:
        :func:`wait_mirrored` says when topics reached the hub. ``settle``
        seconds catch a MirrorMaker that exits at once (a bad setting).
        """
        pid = self._pid_file.recorded()
        if pid is not None:
            running = self.status().flows
            wanted = [(alias, self.hub[0]) for alias in self.sources]
            if self.sources and sorted(running) != sorted(wanted):
                raise DevKafkaError(
                    f"MirrorMaker in {self.directory} runs {_flows_text(running)}, "
                    f"not {_flows_text(wanted)}: stop it first"
                )
            return pid
        properties = mirror_properties(
            self.sources,
            self.hub,
            exactly_once=self.exactly_once,
            rest_port=free_port() if self.exactly_once else None,
        )
        libs = resolve_mirror_jars()
        java = shutil.which("java")
        if java is None:
            raise DevKafkaError("Java 17 or newer is needed to run MirrorMaker; install it first")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(properties)
        log4j = self.directory / "log4j2.properties"
        log4j.write_text(LOG4J2_TEMPLATE.format(log=self.log_file))
        command = [
            java, *_JVM_OPTIONS, f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*",
            MAIN_CLASS, str(self.properties_file), "--clusters", self.hub[0],
        ]  # fmt: skip
        pid = self._pid_file.spawn(command, self.directory / "mirror.out")
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            if not alive(pid):
                self._pid_file.forget()
                raise DevKafkaError(
                    f"MirrorMaker exited during start-up; see {self.directory / 'mirror.out'}"
                )
            time.sleep(0.1)
        return pid

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the MirrorMaker this instance started; False if none was running.

        SIGTERM lets MirrorMaker commit the source offsets it has written
        (or abort its open transaction): a restart resumes there.
        """
        return self._pid_file.stop(timeout)


def _flows_text(flows: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f"{source}->{target}" for source, target in flows) or "no flow"


def wait_mirrored(hub_bootstrap: str, topics: Iterable[str], timeout: float = 120.0) -> None:
    """Return once every topic of ``topics`` exists at the hub."""
    wanted = set(topics)

    async def present() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=hub_bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            return set(await admin.list_topics())
        except KafkaError:
            return set()
        finally:
            await admin.close()

    deadline = time.monotonic() + timeout
    while True:
        missing = wanted - asyncio.run(present())
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TemporaryError(
                f"not mirrored within {timeout:.0f}s: {', '.join(sorted(missing))}"
            )
        time.sleep(1.0)
