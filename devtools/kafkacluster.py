"""Three real Kafka brokers on loopback as one cluster, for tests of replication.

Each broker is a :class:`~devtools.kafka.DevBroker` in a directory of its own,
broker and KRaft controller at once; the three controllers are the quorum, so
the cluster keeps working while any one broker is down. Internal topics, and
topics created without a factor, get three replicas and ``min.insync.replicas``
2, as production clusters have them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from devtools.kafka import DevBroker, new_cluster_id
from devtools.process import free_port

BROKERS = 3


@dataclass
class DevKafkaCluster:
    """Three brokers in ``directory``/broker-1..3 on free loopback ports."""

    directory: Path
    brokers: list[DevBroker] = field(init=False)

    def __post_init__(self) -> None:
        ports = [(free_port(), free_port()) for _ in range(BROKERS)]
        voters = ",".join(f"{n + 1}@127.0.0.1:{c}" for n, (_, c) in enumerate(ports))
        cluster_id = new_cluster_id()
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

    @property
    def bootstrap(self) -> str:
        return ",".join(broker.bootstrap for broker in self.brokers)

    def start(self, timeout: float = 120.0) -> None:
        """Start every broker, then return once each accepts clients."""
        for broker in self.brokers:
            broker.spawn()  # all at once: none is ready before a majority of them runs
        for broker in self.brokers:
            broker.wait_ready(timeout)

    def stop(self) -> None:
        for broker in self.brokers:
            broker.stop()
