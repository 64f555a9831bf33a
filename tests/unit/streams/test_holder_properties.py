"""Who held an IP at an event's time, over random timelines (hypothesis).

Two properties:

- **the rule**: for any timeline of pods holding one IP (Pending first, IPs
  reported late or never, deletions seen late or never) and any event time,
  the store answers what a dumb reference of the rule in docs/streams.md
  answers, computed here by brute force over the same records;
- **the truth**: when pods really hold an IP one after the other, the watcher
  reports each hand-over within seconds, and node clocks are off by up to the
  skew the store allows, every event a pod made while holding the IP resolves
  to that pod, in any order, through the remembered routes too.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from helpers.streamrecords import CLUSTER, pod, socket
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from callmap.counters import StageCounters
from callmap.wire import PodIdentity
from streams.combine import Combiner
from streams.identity import IdentityStore
from streams.resolve import Resolver
from streams.routes import Routes

IP = "10.1.0.5"
SKEW, GRACE = 5.0, 60.0


# --- the rule -----------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    uid: str
    created: float
    ips_since: float | None
    deleted: float | None
    has_ip: bool


def reference(records: list[Record], ts: float) -> str | None:
    """The rule of docs/streams.md, by brute force; equal times go to the greater uid."""
    spans = []
    for r in records:
        if not r.has_ip:
            continue  # a Pending pod holds nothing
        start = r.ips_since if r.ips_since is not None else r.created
        end = r.deleted if r.deleted is not None else math.inf
        spans.append((r.uid, start, end))
    holding = [s for s in spans if s[1] <= ts < s[2]]
    if holding:
        return max(holding, key=lambda s: (s[1], s[0]))[0]  # overlaps: the one that started last
    starting = [s for s in spans if s[1] - SKEW <= ts < s[1]]
    if starting:
        return min(starting, key=lambda s: (s[1], s[0]))[0]  # the next holder, by another clock
    ended = [s for s in spans if s[2] <= ts < s[2] + GRACE]
    if ended:
        return max(ended, key=lambda s: (s[2], s[0]))[0]  # terminating, nobody else holds it
    return None


times = st.integers(min_value=0, max_value=2000).map(float)


@st.composite
def timelines(draw: st.DrawFn) -> list[Record]:
    records = []
    for i in range(draw(st.integers(min_value=1, max_value=6))):
        created = draw(times)
        since = created + draw(st.integers(min_value=0, max_value=300))
        deleted = draw(st.one_of(st.none(), st.just(since + draw(st.integers(1, 600)))))
        records.append(
            Record(
                uid=f"p{i}",
                created=created,
                ips_since=draw(st.one_of(st.just(float(since)), st.none())),
                deleted=None if deleted is None else float(deleted),
                has_ip=draw(st.booleans()),
            )
        )
    return records


def stored(r: Record) -> PodIdentity:
    record = pod(
        f"pod-{r.uid}", IP, uid=r.uid, created=r.created, ips_since=r.ips_since, deleted=r.deleted
    )
    return record if r.has_ip else replace(record, ips=())


@settings(max_examples=400, deadline=None)
@given(timelines(), st.lists(times, min_size=1, max_size=20), st.randoms())
def test_the_store_answers_what_the_rule_says(
    records: list[Record],
    events: list[float],
    order: random.Random,
) -> None:
    store = IdentityStore(clock_skew=SKEW, deletion_grace=GRACE)
    arrival = list(records)
    order.shuffle(arrival)
    for r in arrival:
        store.put_pod(r.uid, stored(r))
    for ts in events:
        holding = store.holder(IP, ts)
        assert (None if holding is None else holding.key) == reference(records, ts), ts


# --- the truth ----------------------------------------------------------------------


@st.composite
def handovers(draw: st.DrawFn) -> list[tuple[str, float, float, float]]:
    """Pods holding the IP one after the other: (uid, since, really_gone, reported_deleted)."""
    out = []
    t = float(draw(st.integers(0, 100)))
    for i in range(draw(st.integers(min_value=1, max_value=6))):
        since = t
        gone = since + draw(st.integers(min_value=1, max_value=600))
        reported = gone + draw(st.floats(min_value=0, max_value=2))  # the watcher's delay
        out.append((f"p{i}", since, gone, reported))
        t = reported + 2 * SKEW + draw(st.floats(min_value=0, max_value=120))  # reuse
    return out


@settings(max_examples=300, deadline=None)
@given(handovers(), st.data())
def test_every_event_goes_to_the_pod_that_really_held_the_ip(
    timeline: list[tuple[str, float, float, float]], data: st.DataObject
) -> None:
    store = IdentityStore(clock_skew=SKEW, deletion_grace=GRACE)
    store.put_pod("srv", pod("server-0", "10.1.0.99", uid="srv", workload="server"))
    for uid, since, _, reported in timeline:
        created = since - data.draw(st.floats(min_value=0, max_value=300))  # Pending first
        store.put_pod(
            uid,
            pod(
                f"pod-{uid}",
                IP,
                uid=uid,
                workload=uid,
                created=created,
                ips_since=since,
                deleted=reported,
            ),
        )
    events = []
    for uid, since, gone, _ in timeline:
        for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
            t = data.draw(st.floats(min_value=since, max_value=gone, exclude_max=True))
            stamped = t + data.draw(st.floats(min_value=-SKEW, max_value=SKEW))
            events.append((uid, stamped))
    events = data.draw(st.permutations(events))
    combiner = Combiner()
    routes = Routes(CLUSTER, Resolver(store, StageCounters()), combiner)
    for uid, stamped in events:
        calls_in = socket("10.1.0.99", 8080, IP, 40000, role="server", ts=stamped, pod_uid="srv")
        (slot,) = routes.socket(calls_in, final=False).slots
        assert slot.client.name == uid, (uid, stamped)
