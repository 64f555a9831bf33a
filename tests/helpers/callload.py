"""A steady stream of calls for fault tests: new clients arrive among repeats.

The truth of a run is the set of clients this load published, kept here and
not derived from anything callmap computes.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from callmap.broker import make_producer
from callmap.config import Settings
from callmap.wire import SOCKETS, SocketBatch, SocketObservation, encode_batches
from helpers.streamkit import conn, pod, publish

SERVER_IP = "10.1.0.11"


def client_ip(n: int) -> str:
    return f"10.3.{n // 250}.{n % 250 + 1}"


def client_name(n: int) -> str:
    return f"client{n}"


@dataclass
class CallLoad:
    """Batches of socket observations from node ``node-a``, every ``period`` seconds:
    ``new`` clients calling ``cartservice`` for the first time among ``repeats`` calls
    of clients seen before, up to ``max_clients`` clients."""

    settings: Settings
    cluster: str
    rng: random.Random
    new: int = 4
    repeats: int = 100
    period: float = 0.1
    max_clients: int = 4000
    clients: int = 0
    """Clients published so far (the truth: each is one edge)."""
    records: int = 0
    """Socket observations published so far."""
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def identities(self) -> None:
        """Every client's pod and the server's, before any call."""
        pods = [pod(self.cluster, client_name(n), client_ip(n)) for n in range(self.max_clients)]
        await publish(self.settings, [*pods, pod(self.cluster, "cartservice", SERVER_IP)])

    async def run(self) -> None:
        """Publish until :attr:`stop` is set or every client has called."""
        producer = make_producer(self.settings.kafka)
        await producer.start()
        try:
            while not self.stop.is_set() and self.clients < self.max_clients:
                first = self.clients
                self.clients = min(self.max_clients, first + self.new)
                calls: list[SocketObservation] = [
                    conn(self.cluster, client_ip(n), 40000, SERVER_IP, 7070, "client")
                    for n in range(first, self.clients)
                ]
                for old in self.rng.choices(range(first), k=self.repeats) if first else ():
                    calls.append(
                        conn(self.cluster, client_ip(old), 40000, SERVER_IP, 7070, "client")
                    )
                for message in encode_batches(
                    SocketBatch, cluster=self.cluster, node="node-a", records=calls
                ):
                    await producer.send(SOCKETS.name, message.value, key=b"node-a")
                self.records += len(calls)
                await asyncio.sleep(self.period)
            await producer.flush()
        finally:
            await producer.stop()

    def describe(self) -> str:
        per_second = 1 / self.period
        calls = (self.new + self.repeats) * per_second
        return f"{self.new * per_second:.0f} new edges/s among {calls:,.0f} calls/s"

    def truth(self) -> set[tuple[str, str]]:
        """(client, server) of every edge the published calls make."""
        return {(client_name(n), "cartservice") for n in range(self.clients)}
