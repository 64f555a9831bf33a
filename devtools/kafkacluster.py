"""Three real Kafka brokers on loopback as one cluster, for tests of replication.

Each broker is a :class:`~devtools.kafka.DevBroker` in a directory of its own,
broker and KRaft controller at once; the three controllers are the quorum, so
the cluster keeps working while any one broker is down. Internal topics, and
topics created without a factor, get three replicas and ``min.insync.replicas``
2, as production clusters have them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from callmap.paths import cache_dir
from devtools.kafka import BrokerStatus, DevBroker, new_cluster_id
from devtools.process import free_port

BROKERS = 3


@dataclass
class DevKafkaCluster:
    """Three brokers in ``directory``/broker-1..3: on free loopback ports, or on
    ``port`` .. ``port`` + 2 for clients and the three after them for controllers."""

    directory: Path
    port: int | None = None
    brokers: list[DevBroker] = field(init=False)

    @classmethod
    def named(cls, name: str, port: int) -> DevKafkaCluster:
        """The instance ``callmap dev kafka --brokers 3 --name NAME --port PORT`` means."""
        return cls(cache_dir() / "kafka" / "instances" / f"{name}-x{BROKERS}", port)

    def __post_init__(self) -> None:
        if self.port is None:
            ports = [(free_port(), free_port()) for _ in range(BROKERS)]
        else:
            ports = [(self.port + n, self.port + BROKERS + n) for n in range(BROKERS)]
        voters = ",".join(f"{n + 1}@127.0.0.1:{c}" for n, (_, c) in enumerate(ports))
        cluster_id = self._formatted_id() or new_cluster_id()
        self.brokers = [
            DevBroker(
                self.directory / f"broker-{n + 1}",
                port,
                controller_port=controller,
                node_id=n + 1,
                voters=voters,
                replicas=BROKERS,
                cluster_id=cluster_id,
            )
            for n, (port, controller) in enumerate(ports)
        ]

    def _formatted_id(self) -> str | None:
        """The cluster id a broker of an earlier start was formatted with, if any."""
        for meta in sorted(self.directory.glob("broker-*/data/meta.properties")):
            for line in meta.read_text().splitlines():
                if line.startswith("cluster.id="):
                    return line.removeprefix("cluster.id=").strip()
        return None

    @property
    def bootstrap(self) -> str:
        return ",".join(broker.bootstrap for broker in self.brokers)

    def start(self, timeout: float = 120.0) -> BrokerStatus:
        """Start every broker, then return once each accepts clients."""
        for broker in self.brokers:
            broker.spawn()  # all at once: none is ready before a majority of them runs
        for broker in self.brokers:
            broker.wait_ready(timeout)
        return self.status()

    def status(self) -> BrokerStatus:
        """Running when every broker is; the pid is the first broker's."""
        states = [broker.status() for broker in self.brokers]
        up = sum(state.running for state in states)
        pids = ", ".join(str(state.pid) for state in states if state.pid)
        detail = "running" if up == BROKERS else f"{up} of {BROKERS} brokers running"
        return BrokerStatus(
            up == BROKERS,
            states[0].pid,
            self.bootstrap,
            self.directory,
            f"{detail} (pids {pids})" if pids else detail,
        )

    def stop(self) -> bool:
        """Stop the brokers this machine's callmap started; False if none was running.

        All at once: each broker is a controller of the quorum too, and one
        stopped after the others waits for a majority that has gone, until
        it is killed (measured: 31 s one after another, 5 s at once, for a
        cluster with every broker up or with one already down)."""
        with ThreadPoolExecutor(len(self.brokers), thread_name_prefix="kafka-stop") as pool:
            return any(list(pool.map(DevBroker.stop, self.brokers)))
