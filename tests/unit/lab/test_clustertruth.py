"""The cluster lab's own truth: hand-written call logs explained by a hand-written API record."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from lab.clusterhistory import ApiEvent, ApiHistory, parse_api_line
from lab.clustertruth import (
    EMPTY_SERVICE_SPAN,
    ENDPOINT_SYNC,
    CallRecord,
    ClusterTruth,
    TrueEdge,
    parse_call_line,
    parse_call_log,
    true_edges,
)

SVC = "svc.lab.callmap.io"


def pod(
    uid: str,
    key: str,
    ips: tuple[str, ...] = (),
    owner: tuple[str, str, str] | None = None,
    labels: dict[str, str] | None = None,
    node: str = "node-1",
    host_network: bool = False,
    hostname: str | None = None,
    subdomain: str | None = None,
    terminating: bool = False,
) -> dict[str, Any]:
    namespace, name = key.split("/")
    metadata: dict[str, Any] = {"uid": uid, "namespace": namespace, "name": name}
    metadata["labels"] = labels or {}
    if owner is not None:
        kind, owner_name, owner_uid = owner
        metadata["ownerReferences"] = [
            {"kind": kind, "name": owner_name, "uid": owner_uid, "controller": True}
        ]
    if terminating:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    spec: dict[str, Any] = {"nodeName": node}
    if host_network:
        spec["hostNetwork"] = True
    if hostname:
        spec |= {"hostname": hostname, "subdomain": subdomain}
    status = {"phase": "Running" if ips else "Pending", "podIPs": [{"ip": ip} for ip in ips]}
    return {"metadata": metadata, "spec": spec, "status": status}


def controller(uid: str, key: str, owner: tuple[str, str, str] | None = None) -> dict[str, Any]:
    return pod(uid, key, owner=owner)  # only metadata counts


def service(
    uid: str,
    key: str,
    ips: tuple[str, ...] = (),
    selects: str | None = None,
    external: str | None = None,
) -> dict[str, Any]:
    namespace, name = key.split("/")
    spec: dict[str, Any]
    if external:
        spec = {"type": "ExternalName", "externalName": external}
    else:
        spec = {"type": "ClusterIP", "clusterIPs": list(ips) or ["None"]}
        spec["clusterIP"] = spec["clusterIPs"][0]
        spec["selector"] = {f"{SVC}/{selects or name}": "true"}
    return {"metadata": {"uid": uid, "namespace": namespace, "name": name}, "spec": spec}


def ev(t: float, kind: str, obj: dict[str, Any], event: str = "ADDED") -> ApiEvent:
    return ApiEvent(t, kind, event, obj)


def call(
    t: float,
    pod_key: str,
    to: str,
    addr: str | None,
    port: int,
    peer: str | None = None,
    opened: float | None = None,
) -> CallRecord:
    return CallRecord(t, pod_key, to, addr, port, peer is not None, peer, opened)


def behind(service_name: str) -> dict[str, str]:
    return {f"{SVC}/{service_name}": "true"}


# The shop on a cluster: a Deployment (frontend), a Deployment behind a
# service (cartservice, later deleted for good), emailservice (whose new pod
# gets cartservice's freed address), a host-network DaemonSet, a headless
# StatefulSet, a CronJob's run, CoreDNS behind kube-dns, an ExternalName.
CART_IP, EMAIL_IP, FRONT_IP = "10.200.1.5", "10.200.1.6", "10.200.1.3"
CART_SVC, EMAIL_SVC = "10.96.40.1", "10.96.40.2"
CART_GONE, EMAIL_NEW = 120.0, 125.0


def shop_events() -> list[ApiEvent]:
    rs = ("ReplicaSet", "frontend-7d9c", "rs-f")
    cart_rs = ("ReplicaSet", "cartservice-55aa", "rs-c")
    email_rs = ("ReplicaSet", "emailservice-66bb", "rs-e")
    dns_rs = ("ReplicaSet", "coredns-1234", "rs-dns")
    node = {"type": "InternalIP", "address": "10.77.0.11"}
    dns_service = {
        "metadata": {"uid": "s-dns", "namespace": "kube-system", "name": "kube-dns"},
        "spec": {"clusterIP": "10.96.0.10", "selector": {"k8s-app": "kube-dns"}},
    }
    cart = "shop/cartservice-55aa-ccccc"
    email2 = "shop/emailservice-66bb-eeee2"
    mongo = ("StatefulSet", "mongodb", "sts-m")
    cart_behind, email_behind = behind("cartservice"), behind("emailservice")
    return [
        ev(0, "Node", {"metadata": {"name": "node-1"}, "status": {"addresses": [node]}}),
        *(
            ev(0, "ReplicaSet", controller(uid, f"{ns}/{name}-{hash_}", ("Deployment", name, "d")))
            for uid, ns, name, hash_ in (
                ("rs-f", "shop", "frontend", "7d9c"),
                ("rs-c", "shop", "cartservice", "55aa"),
                ("rs-e", "shop", "emailservice", "66bb"),
                ("rs-dns", "kube-system", "coredns", "1234"),
            )
        ),
        ev(0, "Job", controller("job-b", "app/backup-28000000", ("CronJob", "backup", "cj-b"))),
        ev(0, "Service", service("s-c", "shop/cartservice", (CART_SVC,))),
        ev(0, "Service", service("s-e", "shop/emailservice", (EMAIL_SVC,))),
        ev(0, "Service", service("s-m", "data/mongodb")),  # headless
        ev(0, "Service", service("s-p", "shop/stripe", external="api.stripe.com")),
        ev(0, "Service", dns_service),
        ev(1, "Pod", pod("p-dns", "kube-system/coredns-1234-aaaaa", ("10.200.1.2",), dns_rs,
                         {"k8s-app": "kube-dns"})),
        ev(2, "Pod", pod("p-f", "shop/frontend-7d9c-fffff", (FRONT_IP,), rs)),
        ev(2, "Pod", pod("p-c", cart, (CART_IP,), cart_rs, cart_behind)),
        ev(2, "Pod", pod("p-e1", "shop/emailservice-66bb-eeee1", (EMAIL_IP,), email_rs,
                         email_behind)),
        ev(2, "Pod", pod("p-a", "ops/prober-xx1", ("10.77.0.11",), ("DaemonSet", "prober", "5"),
                         host_network=True)),
        ev(2, "Pod", pod("p-b", "app/backup-28000000-bbbbb", ("10.200.1.9",),
                         ("Job", "backup-28000000", "job-b"))),
        ev(2, "Pod", pod("p-m1", "data/mongodb-1", ("10.200.1.11",), mongo, behind("mongodb"),
                         hostname="mongodb-1", subdomain="mongodb")),
        # churn: cartservice's pod terminates, then goes; a new emailservice pod gets its address
        ev(CART_GONE - 2, "Pod", pod("p-c", cart, (CART_IP,), cart_rs, cart_behind,
                                     terminating=True), "MODIFIED"),
        ev(CART_GONE, "Pod", pod("p-c", cart, (CART_IP,), cart_rs, cart_behind,
                                 terminating=True), "DELETED"),
        ev(EMAIL_NEW - 1, "Pod", pod("p-e2", email2, (), email_rs, email_behind)),
        ev(EMAIL_NEW, "Pod", pod("p-e2", email2, (CART_IP,), email_rs, email_behind), "MODIFIED"),
    ]  # fmt: skip


FRONT, CART = "shop/frontend-7d9c-fffff", "pong shop/cartservice-55aa-ccccc"
EMAIL1, EMAIL2 = "pong shop/emailservice-66bb-eeee1", "pong shop/emailservice-66bb-eeee2"
PROBER = "ops/prober-xx1"


def truth_of(calls: list[CallRecord], capture_started: float | None = None) -> ClusterTruth:
    return true_edges(
        calls, ApiHistory.from_events(shop_events()), "cluster.local", capture_started
    )


def edges(truth: ClusterTruth) -> set[str]:
    return {str(e) for e in truth.edges}


def test_a_service_name_or_address_is_the_workloads_it_selected() -> None:
    truth = truth_of(
        [
            call(10, FRONT, "cartservice", CART_SVC, 7070, CART),
            call(11, FRONT, CART_SVC, CART_SVC, 7070, CART),
            call(12, FRONT, "emailservice.shop.svc.cluster.local", EMAIL_SVC, 5000, EMAIL1),
        ]
    )
    assert edges(truth) == {
        "shop/frontend -> shop/cartservice:7070",
        "shop/frontend -> shop/emailservice:5000",
    }
    # DNS over TCP to CoreDNS may show, for a client that called names
    assert truth.tolerated == {TrueEdge("shop/frontend", "kube-system/coredns", 53)}
    assert truth.notes == () and truth.calls == 3


def test_names_outside_the_cluster_are_externals_and_addresses_stay_addresses() -> None:
    truth = truth_of(
        [
            call(10, FRONT, "api.stripe.com", "203.0.113.10", 443, "pong external:api.stripe.com"),
            call(11, FRONT, "stripe", "203.0.113.10", 443, "pong external:api.stripe.com"),
            call(12, FRONT, "203.0.113.10", "203.0.113.10", 8443, "pong external:api.stripe.com"),
        ]
    )
    assert edges(truth) == {
        "shop/frontend -> external:api.stripe.com:443",  # by name, and by ExternalName service
        "shop/frontend -> ip:203.0.113.10:8443",
    }


def test_an_external_connection_opened_before_capture_is_only_its_address() -> None:
    answer = "pong external:api.stripe.com"
    truth = truth_of(
        [
            call(10, FRONT, "api.stripe.com", "203.0.113.10", 443, answer, opened=5),
            call(30, FRONT, "api.stripe.com", "203.0.113.10", 443, answer, opened=5),
        ],
        capture_started=20,
    )
    assert edges(truth) == {"shop/frontend -> ip:203.0.113.10:443"}
    reopened = truth_of(
        [call(40, FRONT, "api.stripe.com", "203.0.113.10", 443, answer, opened=35)],
        capture_started=20,
    )
    assert edges(reopened) == {"shop/frontend -> external:api.stripe.com:443"}


def test_a_reused_address_belongs_to_whoever_held_it_at_the_time() -> None:
    truth = truth_of(
        [
            call(100, PROBER, CART_IP, CART_IP, 7070, CART),
            call(CART_GONE + 1, PROBER, CART_IP, CART_IP, 7070),  # refused: nobody holds it
            call(EMAIL_NEW - 0.5, PROBER, CART_IP, CART_IP, 7070, EMAIL2),  # status lags
            call(EMAIL_NEW + 5, PROBER, CART_IP, CART_IP, 7070, EMAIL2),
        ]
    )
    # a host-network client acts as its node
    assert edges(truth) == {
        "node:node-1 -> shop/cartservice:7070",
        "node:node-1 -> shop/emailservice:7070",
    }
    assert truth.notes == ()
    assert not any(e.client == "node:node-1" and "coredns" in e.server for e in truth.tolerated)


def test_the_record_decides_where_an_answer_disagrees_and_a_note_says_so() -> None:
    truth = truth_of([call(EMAIL_NEW + 5, PROBER, CART_IP, CART_IP, 7070, CART)])
    assert edges(truth) == {"node:node-1 -> shop/emailservice:7070"}
    assert len(truth.notes) == 1 and "the record counts" in truth.notes[0]


def test_a_deleted_pods_calls_still_count_as_its_workloads() -> None:
    cart_pod = "shop/cartservice-55aa-ccccc"
    truth = truth_of([call(CART_GONE - 1, cart_pod, "emailservice", EMAIL_SVC, 5000, EMAIL1)])
    assert edges(truth) == {"shop/cartservice -> shop/emailservice:5000"}
    lost = truth_of([call(10, "shop/never-there", "emailservice", EMAIL_SVC, 5000, EMAIL1)])
    assert lost.edges == frozenset() and "never held it" in lost.notes[0]


def test_a_service_left_with_nobody_is_the_service_itself_once_it_lasts() -> None:
    refused = [
        call(CART_GONE + 1 + i, FRONT, "cartservice", CART_SVC, 7070)
        for i in range(0, int(EMPTY_SERVICE_SPAN) + 5, 5)
    ]
    truth = truth_of(refused)
    assert edges(truth) == {"shop/frontend -> service:shop/cartservice:7070"}
    brief = truth_of(refused[:1])
    assert brief.edges == frozenset()
    assert TrueEdge("shop/frontend", "service:shop/cartservice", 7070) in brief.tolerated
    # refused while the pod was still behind the service (terminating is not behind it)
    early = truth_of([call(50, FRONT, "cartservice", CART_SVC, 7070)])
    assert early.edges == frozenset()
    assert TrueEdge("shop/frontend", "shop/cartservice", 7070) in early.tolerated


def test_owner_chains_and_per_pod_names() -> None:
    backup = "app/backup-28000000-bbbbb"
    truth = truth_of(
        [
            call(10, backup, "mongodb-1.mongodb.data", "10.200.1.11", 27017, "pong data/mongodb-1"),
            call(11, backup, "mongodb.data", "10.200.1.11", 27017, "pong data/mongodb-1"),
            call(12, backup, "10-200-1-3.shop.pod", FRONT_IP, 80, f"pong {FRONT}"),
            call(13, backup, "10.77.0.11", "10.77.0.11", 9100, "pong ops/prober-xx1"),
        ]
    )
    assert edges(truth) == {
        "app/backup -> data/mongodb:27017",  # Pod -> Job -> CronJob; StatefulSet
        "app/backup -> shop/frontend:80",  # Pod -> ReplicaSet -> Deployment
        "app/backup -> node:node-1:9100",
    }


def test_the_search_path_finds_a_service_before_a_per_pod_name() -> None:
    events = [
        *shop_events(),
        ev(3, "Service", service("s-f", "shop/frontend", ("10.96.40.3",))),
        ev(3, "Pod", pod("p-f2", "shop/frontend-7d9c-ggggg", ("10.200.1.12",),
                         ("ReplicaSet", "frontend-7d9c", "rs-f"), behind("frontend"))),
    ]  # fmt: skip
    history = ApiHistory.from_events(events)
    calls = [call(10, FRONT, "frontend.shop", "10.96.40.3", 80, "pong shop/frontend-7d9c-ggggg")]
    truth = true_edges(calls, history)
    assert edges(truth) == {"shop/frontend -> shop/frontend:80"}  # a self-edge, kept


def test_an_answer_from_a_pod_the_service_did_not_select_counts_with_a_note() -> None:
    truth = truth_of([call(10, FRONT, "emailservice", EMAIL_SVC, 5000, CART)])
    assert edges(truth) == {
        "shop/frontend -> shop/cartservice:5000",
        "shop/frontend -> shop/emailservice:5000",
    }
    assert "did not select" in truth.notes[0]


def test_a_pod_the_service_dropped_a_moment_ago_still_answers_as_kube_proxy_lags() -> None:
    just_after = CART_GONE - 2 + ENDPOINT_SYNC / 2  # terminating since CART_GONE - 2
    truth = truth_of([call(just_after, FRONT, "cartservice", CART_SVC, 7070, CART)])
    assert edges(truth) == {"shop/frontend -> shop/cartservice:7070"}
    assert truth.notes == ()


def test_an_owner_missing_from_the_record_is_named_and_noted() -> None:
    events = [e for e in shop_events() if e.kind != "ReplicaSet"]
    truth = true_edges(
        [call(10, FRONT, "emailservice", EMAIL_SVC, 5000, EMAIL1)], ApiHistory.from_events(events)
    )
    assert edges(truth) == {"shop/frontend-7d9c -> shop/emailservice-66bb:5000"}
    assert any("not in the record" in n for n in truth.notes)


def test_log_and_record_lines_parse_and_bad_ones_are_counted() -> None:
    line = json.dumps(
        {"t": 1.5, "pod": "a/b", "to": "x", "addr": None, "port": 80, "ok": False, "peer": None}
    )
    assert parse_call_line(line) == CallRecord(1.5, "a/b", "x", None, 80, False, None)
    records, bad = parse_call_log(line + "\n\n{torn\n" + line + "\n")
    assert (len(records), bad) == (2, 1)
    with pytest.raises(ValueError):
        parse_call_line('{"t": 1}')
    event = parse_api_line(json.dumps({"t": 2, "kind": "Pod", "event": "ADDED", "object": {}}))
    assert (event.t, event.kind, event.event) == (2.0, "Pod", "ADDED")
    history = ApiHistory.from_events([event])
    assert history.skipped == 1  # a pod without metadata


def test_the_truth_imports_nothing_of_callmaps_own_resolution() -> None:
    code = (
        "import sys, lab.clustertruth, lab.clusterhistory\n"
        "bad = [m for m in sys.modules if m in ('lab.truth', 'lab.dnszone', 'lab.compare')"
        " or m.split('.')[0] in ('streams', 'watch', 'capture')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
