"""A real Apache Kafka 4.x broker (KRaft) on loopback, for development and tests.

The official jars (``org.apache.kafka:kafka_2.13`` and its runtime
dependencies) are resolved from Maven Central with Maven into the cache
directory once; each broker instance keeps its configuration, data and log in
a directory of its own, outside the repository. Starting is idempotent, and
stopping only ever signals the process id this module started and recorded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from callmap.errors import CallmapError, TemporaryError
from callmap.paths import cache_dir
from devtools.process import PidFile, accepts_connections, alive, free_port, locked

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
DEFAULT_PORT = 9092

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.callmap.dev</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

LOG4J2_TEMPLATE = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.ready.name = kafka.server.KafkaRaftServer
logger.ready.level = INFO
"""

# Small, fast settings for a development machine: one replica (three in a
# three-broker cluster), few offsets partitions, no rebalance delay, and no
# topic auto-creation, as on production clusters, so that a missing topic is a
# bug we see.
_SERVER_PROPERTIES = """process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://127.0.0.1:{controller_port}{secure_listeners}
advertised.listeners=PLAINTEXT://{host}:{port}{secure_listeners}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT{secure_map}
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=1
default.replication.factor={replicas}
min.insync.replicas={min_insync}
offsets.topic.replication.factor={replicas}
offsets.topic.num.partitions=10
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={min_insync}
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.cleaner.backoff.ms=2000
"""

# The listeners that authenticate (SecureListeners). The open PLAINTEXT listener and
# the controller's stay, for development, and their anonymous principal is a super
# user; everyone else needs ACLs.
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
_SECURE_PROPERTIES = """sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram_login}
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
ssl.truststore.type=PEM
ssl.truststore.location={truststore}
listener.name.ssl.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]+).*$/$1/,DEFAULT
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=false
"""


@dataclass(frozen=True, slots=True)
class SecureListeners:
    """Two client listeners that authenticate, on loopback, for trying callmap's
    security settings against a real broker: SASL_SSL with SCRAM-SHA-512 users, and
    SSL that requires a client certificate (the principal is the certificate's CN).
    ACLs are enforced (StandardAuthorizer, nothing allowed without one)."""

    sasl_port: int
    ssl_port: int
    keystore: Path
    """PEM: the server's private key (PKCS#8, unencrypted) and its certificate."""
    truststore: Path
    """PEM: the certificate authority of the client certificates."""
    scram_users: tuple[tuple[str, str], ...] = ()
    """(name, password) of each SCRAM user, created when the storage is formatted."""

    def listeners(self) -> str:
        return f",SASL_SSL://127.0.0.1:{self.sasl_port},SSL://127.0.0.1:{self.ssl_port}"

    def protocol_map(self) -> str:
        return ",SASL_SSL:SASL_SSL,SSL:SSL"

    def properties(self) -> str:
        return _SECURE_PROPERTIES.format(
            keystore=self.keystore, truststore=self.truststore, scram_login=_SCRAM_LOGIN
        )

    def format_options(self) -> list[str]:
        return [
            f"--add-scram=SCRAM-SHA-512=[name={name},password={password}]"
            for name, password in self.scram_users
        ]


_JVM_OPTIONS = [
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
]


class DevKafkaError(CallmapError):
    """The development broker could not be provided."""


def kafka_home(version: str = KAFKA_VERSION) -> Path:
    return cache_dir() / "kafka" / version


def resolve_jars(version: str = KAFKA_VERSION) -> Path:
    """The directory with Kafka's runtime jars, resolving them with Maven if needed."""
    home = kafka_home(version)
    libs = home / "libs"
    stamp = home / "resolved"
    if stamp.exists():
        return libs
    if shutil.which("mvn") is None:
        raise DevKafkaError("Maven (mvn) is needed to fetch Kafka's jars; install it first")
    home.mkdir(parents=True, exist_ok=True)
    with locked(home / ".lock"):
        if stamp.exists():  # another process resolved them while we waited
            return libs
        (home / "pom.xml").write_text(_POM.format(kafka=version, log4j=LOG4J_VERSION))
        shutil.rmtree(libs, ignore_errors=True)
        command = [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(home / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DevKafkaError(f"mvn could not resolve Kafka {version}:\n{result.stdout[-4000:]}")
        stamp.write_text(json.dumps(sorted(p.name for p in libs.glob("*.jar"))))
    return libs


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    """What ``callmap dev kafka status`` reports about one broker instance."""

    running: bool
    """True once the broker answers clients."""
    pid: int | None
    """The broker process this machine's callmap started, if it still runs."""
    bootstrap: str
    """``host:port`` for clients (``CALLMAP_KAFKA_BOOTSTRAP``)."""
    directory: Path
    """Where the instance keeps its configuration, data and log."""
    detail: str
    """``running``, ``not listening`` or ``not started``, for people."""


@dataclass(frozen=True, slots=True)
class DevBroker:
    """One broker instance: its directory, client address and port, and controller port."""

    directory: Path
    """The instance's own directory: configuration, KRaft data, log and pid file."""
    port: int = DEFAULT_PORT
    """The client (PLAINTEXT) port."""
    controller_port: int | None = None
    """The KRaft controller's port on loopback; None picks a free one at start."""
    host: str = "127.0.0.1"
    """The IPv4 address clients reach it at: loopback, or one a development cluster's pods reach."""
    node_id: int = 1
    """Its KRaft node id; the brokers of one cluster differ by it."""
    voters: str | None = None
    """``controller.quorum.voters`` of a multi-broker cluster; None: this broker alone
    (its ``controller_port`` must then be None or its own)."""
    replicas: int = 1
    """Replicas of internal topics and of topics created without a factor."""
    cluster_id: str | None = None
    """The KRaft cluster id it is formatted with; None: a new random one."""
    secure: SecureListeners | None = None
    """Listeners that authenticate, with ACLs enforced; None: the open listener only."""

    @classmethod
    def named(cls, name: str = "dev", port: int = DEFAULT_PORT) -> DevBroker:
        """The instance ``callmap dev kafka --name NAME --port PORT`` means."""
        return cls(cache_dir() / "kafka" / "instances" / name, port)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def _pid_file(self) -> PidFile:
        """``broker.pid``: a pid counts while it runs Kafka's main class from this directory."""
        marks = (b"kafka.Kafka", str(self.directory).encode())
        return PidFile(self.directory / "broker.pid", marks)

    @property
    def log_file(self) -> Path:
        return self.directory / "broker.log"

    def status(self) -> BrokerStatus:
        pid = self._pid_file.recorded()
        if pid is None:
            return BrokerStatus(False, None, self.bootstrap, self.directory, "not started")
        if not accepts_connections(self.port, self.host):
            return BrokerStatus(False, pid, self.bootstrap, self.directory, "not listening")
        return BrokerStatus(True, pid, self.bootstrap, self.directory, "running")

    def start(self, timeout: float = 90.0) -> BrokerStatus:
        """Start the broker unless it runs already; return once it accepts clients."""
        current = self.status()
        if current.running:
            return current
        return self._wait_ready(self.spawn(), timeout)

    def spawn(self) -> int:
        """Start the broker process unless it runs already; its pid. A broker of a
        multi-broker cluster is ready only once a majority of them runs."""
        current = self.status()
        if current.pid is not None:  # started earlier, ready or not yet, or wedged
            return current.pid
        if accepts_connections(self.port, self.host):
            raise DevKafkaError(f"port {self.port} is taken by a process callmap did not start")
        libs = resolve_jars()
        java = shutil.which("java")
        if java is None:
            raise DevKafkaError("Java 17 or newer is needed to run Kafka; install it first")
        controller_port = self.controller_port or free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        data = self.directory / "data"
        properties = self.directory / "server.properties"
        secure = self.secure
        properties.write_text(
            _SERVER_PROPERTIES.format(
                host=self.host,
                port=self.port,
                controller_port=controller_port,
                data=data,
                node_id=self.node_id,
                voters=self.voters or f"{self.node_id}@127.0.0.1:{controller_port}",
                replicas=self.replicas,
                min_insync=min(2, self.replicas),
                secure_listeners=secure.listeners() if secure else "",
                secure_map=secure.protocol_map() if secure else "",
            )
            + (secure.properties() if secure else "")
        )
        log4j = self.directory / "log4j2.properties"
        log4j.write_text(LOG4J2_TEMPLATE.format(log=self.log_file))
        base = [java, *_JVM_OPTIONS, f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*"]
        if not (data / "meta.properties").exists():
            shutil.rmtree(data, ignore_errors=True)
            format_command = [
                *base,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={self.cluster_id or new_cluster_id()}",
                "-c",
                str(properties),
                *(secure.format_options() if secure else []),
            ]
            result = subprocess.run(format_command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise DevKafkaError(
                    f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}"
                )
        command = [*base, "kafka.Kafka", str(properties)]
        return self._pid_file.spawn(command, self.directory / "broker.out")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker this instance started; False if none was running."""
        return self._pid_file.stop(timeout)

    def wait_ready(self, timeout: float = 90.0) -> BrokerStatus:
        """Return once the spawned broker accepts clients."""
        current = self.status()
        if current.running:
            return current
        if current.pid is None:
            raise DevKafkaError(f"Kafka is not running in {self.directory}")
        return self._wait_ready(current.pid, timeout)

    def _wait_ready(self, pid: int, timeout: float) -> BrokerStatus:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(pid):
                self._pid_file.forget()
                raise DevKafkaError(f"Kafka exited during start-up; see {self.log_file}")
            if accepts_connections(self.port, self.host) and _answers_clients(self.bootstrap):
                return BrokerStatus(True, pid, self.bootstrap, self.directory, "running")
            time.sleep(0.25)
        raise TemporaryError(f"Kafka did not accept clients within {timeout:.0f}s", delay=5)


def _answers_clients(bootstrap: str) -> bool:
    """True once the broker answers a metadata request with itself in it."""

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            return bool(cluster.get("brokers"))
        except KafkaError:
            return False
        finally:
            await admin.close()

    return asyncio.run(probe())


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own ``Uuid.randomUuid``, never one that starts with a dash,
    which command-line parsers would take for an option.
    """
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate
