"""Apache Kafka's MirrorMaker 2 between local brokers, for development and tests.

MirrorMaker 2 is Kafka's own cluster-to-cluster replication (the
``connect-mirror`` jars, the same Kafka version as the dev broker, resolved
from Maven Central with Maven into the cache once). One instance runs in
dedicated mode and copies each source cluster's shared callmap topics
(:data:`callmap.wire.topics.SHARED_TOPICS`) to a hub under MirrorMaker's
default replication policy, ``<alias>.<topic>``: what ``callmap aggregate``
reads. Like :class:`~devtools.kafka.DevBroker`, an instance keeps its files in
a directory of its own, and stopping only signals the process it started.
"""

from __future__ import annotations

import asyncio
import json
import re
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
from callmap.wire.topics import SHARED_TOPICS
from devtools.kafka import KAFKA_VERSION, LOG4J2_TEMPLATE, LOG4J_VERSION, DevKafkaError, kafka_home
from devtools.process import PidFile, alive, locked

MAIN_CLASS = "org.apache.kafka.connect.mirror.MirrorMaker"

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

SHARED_TOPICS_PATTERN = "|".join(re.escape(spec.name) for spec in SHARED_TOPICS)
"""The topics every flow copies: a cluster's edges, identities and heartbeats."""


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


def mirror_properties(sources: Mapping[str, str], hub: tuple[str, str]) -> str:
    """MirrorMaker 2's configuration: every source cluster's shared topics to the hub.

    ``sources`` maps each source alias to its bootstrap address; ``hub`` is
    (alias, bootstrap). Replication factors are 1 (single-broker dev
    clusters); topic configs (compaction) are copied; topics and groups are
    looked for every 5 s so that tests do not wait; no consumer-offset
    checkpoints (callmap's readers keep no offsets at the hub).
    """
    hub_alias, hub_bootstrap = hub
    if hub_alias in sources:
        raise ValueError(f"the hub alias {hub_alias!r} is also a source")
    lines = [
        f"clusters = {', '.join([*sources, hub_alias])}",
        f"{hub_alias}.bootstrap.servers = {hub_bootstrap}",
    ]
    for alias, bootstrap in sources.items():
        lines += [
            f"{alias}.bootstrap.servers = {bootstrap}",
            f"{alias}->{hub_alias}.enabled = true",
            f"{alias}->{hub_alias}.topics = {SHARED_TOPICS_PATTERN}",
        ]
    lines += [
        f"{name} = 1"
        for name in (
            "replication.factor",
            "checkpoints.topic.replication.factor",
            "heartbeats.topic.replication.factor",
            "offset-syncs.topic.replication.factor",
            "offset.storage.replication.factor",
            "status.storage.replication.factor",
            "config.storage.replication.factor",
        )
    ]
    lines += [
        "sync.topic.configs.enabled = true",
        "sync.topic.acls.enabled = false",
        "emit.checkpoints.enabled = false",
        "sync.group.offsets.enabled = false",
        "refresh.topics.interval.seconds = 5",
        "refresh.groups.interval.seconds = 5",
        "sync.topic.configs.interval.seconds = 5",
        "dedicated.mode.enable.internode.rest = false",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class DevMirror:
    """One MirrorMaker 2 instance copying ``sources`` into ``hub``."""

    directory: Path
    sources: Mapping[str, str]
    """Source alias -> bootstrap address."""
    hub: tuple[str, str]
    """(hub alias, hub bootstrap address)."""

    @property
    def _pid_file(self) -> PidFile:
        return PidFile(
            self.directory / "mirror.pid", (MAIN_CLASS.encode(), str(self.directory).encode())
        )

    @property
    def log_file(self) -> Path:
        return self.directory / "mirror.log"

    @classmethod
    def named(
        cls, name: str, sources: Mapping[str, str] | None = None, hub: tuple[str, str] = ("", "")
    ) -> DevMirror:
        """The instance ``callmap dev mirror --name NAME`` means."""
        return cls(cache_dir() / "kafka" / "mirrors" / name, sources or {}, hub)

    def running(self) -> bool:
        return self._pid_file.recorded() is not None

    def start(self) -> int:
        """Start MirrorMaker unless it runs already; its pid. Mirroring begins a few seconds
        later: :func:`wait_mirrored` says when topics reached the hub."""
        pid = self._pid_file.recorded()
        if pid is not None:
            return pid
        libs = resolve_mirror_jars()
        java = shutil.which("java")
        if java is None:
            raise DevKafkaError("Java 17 or newer is needed to run MirrorMaker; install it first")
        self.directory.mkdir(parents=True, exist_ok=True)
        properties = self.directory / "mm2.properties"
        properties.write_text(mirror_properties(self.sources, self.hub))
        log4j = self.directory / "log4j2.properties"
        log4j.write_text(LOG4J2_TEMPLATE.format(log=self.log_file))
        command = [
            java, "-Xmx384m", "-XX:+UseSerialGC", f"-Dlog4j2.configurationFile={log4j}",
            "-cp", f"{libs}/*", MAIN_CLASS, str(properties), "--clusters", self.hub[0],
        ]  # fmt: skip
        pid = self._pid_file.spawn(command, self.directory / "mirror.out")
        time.sleep(0.5)
        if not alive(pid):
            self._pid_file.forget()
            raise DevKafkaError(f"MirrorMaker exited during start-up; see {self.directory}")
        return pid

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the MirrorMaker this instance started; False if none was running."""
        return self._pid_file.stop(timeout)


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
