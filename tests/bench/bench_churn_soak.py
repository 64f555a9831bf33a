"""A churn soak of the stream worker's state: 24 simulated hours at 10x a large cluster's churn.

The worker's in-memory state (identity store, resolver and its DNS memory,
routes, combiner) is driven as the stream app drives it, on a simulated clock,
as fast as the CPU allows:

- a cluster of 50 nodes and 5,000 pods in 250 Deployments, 250 services;
- churn: 10 pod replacements a second, ten times a large cluster's steady
  rolling updates, jobs and autoscaling (about one a second for 5,000 pods):
  864,000 replacements in 24 h. Each goes as the watcher publishes it: the
  new pod first Pending (no IP), its IP 1-10 s later from a small per-node
  pool (so addresses are reused fast: a freed address waits 11-60 s, over
  twice the clock skew the design allows, so that every event has one right
  answer), the old pod's deletion, and its tombstone after the watcher's
  retention (1 h);
- events: 40 a second from random running pods, in per-node batches as
  capture publishes them, stamped by their node's clock (each node off by up
  to 2.4 s, so any two clocks by up to the 5 s allowed): DNS answers for
  service names and external names, client-side sockets to other pods, and
  client-side sockets to external addresses named by an earlier answer.

Every event is resolved through the same routes the worker uses and checked
against the simulation's own timeline: the pod that made it and the pod it
called (no streams/ code computes the truth). Each simulated hour prints the
state's sizes and the process's RSS; the verdict compares the last hours with
the hours after warm-up.

Run: ``python tests/bench/bench_churn_soak.py [--hours 24]``.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import time
from collections import deque
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from callmap.counters import StageCounters
from callmap.wire import (
    DnsAnswer,
    PodIdentity,
    ServiceIdentity,
    ServiceWorkload,
    SocketObservation,
    WorkloadRef,
)
from streams.combine import Combiner
from streams.identity import IdentityStore
from streams.resolve import Resolver
from streams.routes import Routes

CLUSTER = "soak"
NODES = 50
WORKLOADS = 250
PODS = 5_000
REPLACEMENTS_PER_SECOND = 10
EVENTS_PER_SECOND = 40
POOL_PER_NODE = 120  # addresses a node hands out: 100 pods on it, so reuse is fast
NODE_SKEW = 2.4
REUSE_GAP = (11.0, 60.0)
PENDING = (1.0, 10.0)
RETENTION = 3600.0
EXTERNALS = 20
DOMAIN = "cluster.local"


@dataclass(slots=True)
class SimPod:
    uid: str
    workload: int
    node: int
    created: float
    ip: str | None = None
    ips_since: float | None = None


@dataclass(slots=True)
class Sim:
    """The simulated cluster: the truth the worker's answers are checked against."""

    rng: random.Random
    now: float = 0.0
    pods: dict[str, SimPod] = field(default_factory=dict)
    running: list[str] = field(default_factory=list)  # uids with an IP
    free: list[deque[tuple[float, str]]] = field(default_factory=list)  # (usable from, ip)
    pending: list[tuple[float, str]] = field(default_factory=list)  # (ip due, uid)
    tombstones: deque[tuple[float, str]] = field(default_factory=deque)
    serial: int = 0
    skew: list[float] = field(default_factory=list)

    def new_uid(self) -> str:
        self.serial += 1
        return f"pod-{self.serial:08d}"


def record(pod: SimPod, deleted: float | None = None) -> PodIdentity:
    return PodIdentity(
        cluster=CLUSTER,
        uid=pod.uid,
        namespace="shop",
        name=pod.uid,
        ips=(pod.ip,) if pod.ip else (),
        node=f"node-{pod.node}",
        workload=WorkloadRef(kind="Deployment", name=f"app-{pod.workload}"),
        created=pod.created,
        deleted=deleted,
        ips_since=pod.ips_since,
    )


def services() -> list[ServiceIdentity]:
    return [
        ServiceIdentity(
            cluster=CLUSTER,
            namespace="shop",
            name=f"svc-{w}",
            type="ClusterIP",
            cluster_ips=(f"10.96.{w // 250}.{w % 250 + 1}",),
            workloads=(ServiceWorkload(namespace="shop", kind="Deployment", name=f"app-{w}"),),
        )
        for w in range(WORKLOADS)
    ]


def external_ip(index: int) -> str:
    return f"203.0.113.{index + 1}"


@dataclass(slots=True)
class Worker:
    """The stream worker's state for one cluster, as the stage drives it."""

    store: IdentityStore
    resolver: Resolver
    combiner: Combiner
    routes: Routes

    @classmethod
    def start(cls) -> Worker:
        store = IdentityStore()
        resolver = Resolver(store, StageCounters(), cluster_domain=DOMAIN)
        combiner = Combiner()
        return cls(store, resolver, combiner, Routes(CLUSTER, resolver, combiner))


@dataclass(slots=True)
class Tally:
    events: int = 0
    wrong: int = 0
    examples: list[str] = field(default_factory=list)

    def check(self, what: str, got: str | None, truth: str) -> None:
        self.events += 1
        if got != truth:
            self.wrong += 1
            if len(self.examples) < 5:
                self.examples.append(f"{what}: got {got}, truth {truth}")


def setup(sim: Sim, worker: Worker) -> None:
    for service in services():
        worker.store.put_service(f"shop/{service.name}", service)
    sim.skew = [sim.rng.uniform(-NODE_SKEW, NODE_SKEW) for _ in range(NODES)]
    sim.free = [deque() for _ in range(NODES)]
    for node in range(NODES):
        for i in range(POOL_PER_NODE):
            sim.free[node].append((-1.0, f"10.{64 + node // 200}.{node % 200}.{i + 2}"))
    for i in range(PODS):
        node = i % NODES
        _, ip = sim.free[node].popleft()
        pod = SimPod(sim.new_uid(), i % WORKLOADS, node, created=-600.0, ip=ip, ips_since=-590.0)
        sim.pods[pod.uid] = pod
        sim.running.append(pod.uid)
        worker.store.put_pod(pod.uid, record(pod))


def churn_second(sim: Sim, worker: Worker) -> None:
    """One simulated second of the watcher: IPs given, replacements begun, tombstones."""
    now, rng, store = sim.now, sim.rng, worker.store
    still: list[tuple[float, str]] = []
    for due, uid in sim.pending:
        pod = sim.pods[uid]
        pool = sim.free[pod.node]
        if due <= now and pool and pool[0][0] <= now:
            _, pod.ip = pool.popleft()
            pod.ips_since = now
            sim.running.append(uid)
            store.put_pod(uid, record(pod))
        else:
            still.append((due, uid))
    sim.pending = still
    for _ in range(REPLACEMENTS_PER_SECOND):
        index = rng.randrange(len(sim.running))
        uid = sim.running[index]
        sim.running[index] = sim.running[-1]
        sim.running.pop()
        old = sim.pods[uid]
        store.put_pod(uid, record(old, deleted=now))
        assert old.ip is not None
        sim.free[old.node].append((now + rng.uniform(*REUSE_GAP), old.ip))
        sim.tombstones.append((now + RETENTION, uid))
        new = SimPod(sim.new_uid(), old.workload, rng.randrange(NODES), created=now)
        sim.pods[new.uid] = new
        store.put_pod(new.uid, record(new))  # Pending: no IP yet
        sim.pending.append((now + rng.uniform(*PENDING), new.uid))
    while sim.tombstones and sim.tombstones[0][0] <= now:
        _, uid = sim.tombstones.popleft()
        store.put_pod(uid, None)
        del sim.pods[uid]
    for pool in sim.free:  # keep each pool in order of when its addresses are free again
        if len(pool) > 1 and pool[-1][0] < pool[-2][0]:
            sim.free[sim.free.index(pool)] = deque(sorted(pool))


EXTERNAL_TTL = 300


def events_second(
    sim: Sim, worker: Worker, tally: Tally, said: dict[str, tuple[int, float]]
) -> None:
    """One simulated second of capture: events from running pods, checked one by one."""
    rng, routes = sim.rng, worker.routes
    routes.begin()
    answers: list[DnsAnswer] = []
    sockets: list[SocketObservation] = []
    for _ in range(EVENTS_PER_SECOND):
        client = sim.pods[sim.running[rng.randrange(len(sim.running))]]
        assert client.ip is not None and client.ips_since is not None
        t = max(sim.now + rng.random(), client.ips_since)
        ts = t + sim.skew[client.node]
        node = f"node-{client.node}"
        truth = f"app-{client.workload}"
        kind = rng.random()
        if kind < 0.4:  # a service by name
            answer = DnsAnswer(
                cluster=CLUSTER, node=node, ts=ts, client_ip=client.ip, server_ip="10.96.0.10",
                transport="udp", qname=f"svc-{rng.randrange(WORKLOADS)}.shop.svc.{DOMAIN}",
                qtype="A", answers=("10.96.0.1",), ttl=30,
            )  # fmt: skip
            route = routes.dns(answer, final=True)
            tally.check("dns client", route.slots[0].client.name, truth)
            answers.append(answer)
        elif kind < 0.6:  # an external name: the client learns its address
            index = rng.randrange(EXTERNALS)
            answer = DnsAnswer(
                cluster=CLUSTER, node=node, ts=ts, client_ip=client.ip, server_ip="10.96.0.10",
                transport="udp", qname=f"api-{index}.example.com", qtype="A",
                answers=(external_ip(index),), ttl=EXTERNAL_TTL,
            )  # fmt: skip
            route = routes.dns(answer, final=True)
            tally.check("dns client", route.slots[0].client.name, truth)
            said[client.uid] = (index, t)
            answers.append(answer)
        elif kind < 0.8 and client.uid in said:  # a socket to an external it was told about
            index, told = said[client.uid]
            if t - told > EXTERNAL_TTL:  # its cache has expired: it would ask again
                continue
            t = max(t, told)
            ts = t + sim.skew[client.node]
            obs = SocketObservation(
                cluster=CLUSTER, node=node, ts=ts, netns=1, local_ip=client.ip,
                local_port=40000, remote_ip=external_ip(index), remote_port=443,
                role="client", first_seen=ts,
            )  # fmt: skip
            route = routes.socket(obs, final=True)
            slot = route.slots[0]
            tally.check("socket client", slot.client.name, truth)
            tally.check("external name", slot.server.dns_name, f"api-{index}.example.com")
            sockets.append(obs)
        else:  # a socket to another running pod, by its address
            server = sim.pods[sim.running[rng.randrange(len(sim.running))]]
            assert server.ip is not None and server.ips_since is not None
            if server.ips_since > t:
                continue
            obs = SocketObservation(
                cluster=CLUSTER, node=node, ts=ts, netns=1, local_ip=client.ip,
                local_port=40000, remote_ip=server.ip, remote_port=8080, role="client",
                first_seen=ts,
            )  # fmt: skip
            route = routes.socket(obs, final=True)
            slot = route.slots[0]
            tally.check("socket client", slot.client.name, truth)
            tally.check("socket server", slot.server.name, f"app-{server.workload}")
            sockets.append(obs)
    late: list[DnsAnswer] = []
    late_sockets: list[SocketObservation] = []
    routes.answers(answers, sim.now, True, late)  # the hot path, as the stage runs it
    routes.connections(sockets, sim.now, True, late_sockets)
    worker.combiner.urgent()
    worker.combiner.due(sim.now)


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def sizes(sim: Sim, worker: Worker) -> dict[str, float]:
    store = worker.store
    return {
        "pods known": len(store.pods),
        "addresses": len(store.by_ip),
        "routes": len(worker.routes),
        "slots": len(worker.combiner),
        "dns memory": len(worker.resolver.memory),
        "rss MB": rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    sim, worker, tally = Sim(random.Random(args.seed)), Worker.start(), Tally()
    setup(sim, worker)
    said: dict[str, tuple[int, float]] = {}
    console = Console(width=130)
    table = Table(title="churn soak: the stream worker's state, each simulated hour")
    for column in ("hour", "pods known", "addresses", "routes", "slots", "dns memory", "rss MB"):
        table.add_column(column, justify="right")
    table.add_column("events checked", justify="right")
    table.add_column("wrong", justify="right")
    hourly: list[dict[str, float]] = []
    started = time.monotonic()
    seconds = int(args.hours * 3600)
    for second in range(seconds):
        sim.now = float(second)
        churn_second(sim, worker)
        events_second(sim, worker, tally, said)
        if second % 600 == 0:  # forget what pods that are gone were told
            said = {uid: told for uid, told in said.items() if uid in sim.pods}
        if second % 3600 == 3599:
            gc.collect()
            row = sizes(sim, worker)
            hourly.append(row)
            table.add_row(
                str(second // 3600 + 1),
                *(f"{row[k]:,.0f}" for k in ("pods known", "addresses", "routes", "slots")),
                f"{row['dns memory']:,.0f}",
                f"{row['rss MB']:.1f}",
                f"{tally.events:,}",
                f"{tally.wrong:,}",
            )
    console.print(table)
    took = time.monotonic() - started
    replacements = seconds * REPLACEMENTS_PER_SECOND
    console.print(
        f"{args.hours:g} simulated hours in {took:.0f} s: {replacements:,} pod replacements, "
        f"{tally.events:,} resolutions checked against the simulation, {tally.wrong:,} wrong"
    )
    for example in tally.examples:
        console.print(f"  wrong: {example}")
    if len(hourly) >= 6:
        settled = hourly[2:5]  # after the first hour's tombstones begin
        last = hourly[-3:]
        for key in ("pods known", "addresses", "routes", "slots", "dns memory", "rss MB"):
            before = max(row[key] for row in settled)
            after = max(row[key] for row in last)
            verdict = "flat" if after <= before * 1.10 + 1 else "GROWING"
            console.print(
                f"  {key}: hours 3-5 at most {before:,.1f}, last 3 hours {after:,.1f}: {verdict}"
            )


if __name__ == "__main__":
    main()
