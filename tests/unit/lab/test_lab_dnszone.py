"""The lab's DNS records and the pods' resolver behaviour (search path, ndots:5)."""

from __future__ import annotations

from helpers.labplans import bundled, plan_of

from lab.addressing import UPSTREAM_DNS
from lab.dnszone import (
    build_zone,
    dnsmasq_conf,
    external_zone,
    first_match,
    hosts_file,
    resolv_conf,
    search_names,
)

LAYOUT = """
name: t
dual_stack: true
workloads:
  - {namespace: shop, name: cart, service: {name: cart, ports: [7070]}}
  - {namespace: data, name: db, kind: StatefulSet, replicas: 2,
     service: {name: db, ports: [5432], headless: true}}
services:
  - {namespace: shop, name: pay, external_name: api.stripe.com}
externals:
  - {name: api.stripe.com, ips: [203.0.113.10, "2001:db8::10"]}
"""


def test_service_names_answer_with_cluster_ips_in_both_families() -> None:
    layout = plan_of(LAYOUT)
    zone = build_zone(layout, layout.pods)
    cart = layout.service("shop", "cart")
    assert cart is not None
    assert zone.lookup("cart.shop.svc.cluster.local") == cart.cluster_ips
    assert zone.lookup("kube-dns.kube-system.svc.cluster.local") == ("10.96.0.10", "fd00:96::a")


def test_headless_services_answer_with_pod_ips_and_per_pod_names() -> None:
    layout = plan_of(LAYOUT)
    zone = build_zone(layout, layout.pods)
    db = [p for p in layout.pods if p.ref == "data/db"]
    assert zone.lookup("db.data.svc.cluster.local") == tuple(ip for p in db for ip in p.ips)
    assert zone.lookup("db-1.db.data.svc.cluster.local") == db[1].ips


def test_external_name_is_a_cname_to_the_external() -> None:
    layout = plan_of(LAYOUT)
    zone = build_zone(layout, layout.pods)
    assert zone.cnames["pay.shop.svc.cluster.local"] == "api.stripe.com"
    assert zone.lookup("pay.shop.svc.cluster.local") == ("203.0.113.10", "2001:db8::10")
    assert "cname=pay.shop.svc.cluster.local,api.stripe.com" in dnsmasq_conf(
        zone, "/h", ["10.244.0.2"], "/log", log_queries=False
    )


def test_pod_names_from_dashed_ipv4_addresses() -> None:
    layout = plan_of(LAYOUT)
    zone = build_zone(layout, layout.pods)
    cart = next(p for p in layout.pods if p.ref == "shop/cart")
    dashed = cart.ips[0].replace(".", "-")
    assert zone.lookup(f"{dashed}.shop.pod.cluster.local") == (cart.ips[0],)


def test_an_unknown_name_is_nxdomain() -> None:
    layout = plan_of(LAYOUT)
    zone = build_zone(layout, layout.pods)
    assert zone.lookup("cart.shop.shop.svc.cluster.local") is None
    assert "local=/#/" in dnsmasq_conf(zone, "/h", ["10.244.0.2"], "/log", log_queries=True)


def test_short_names_walk_the_search_path_first_and_pay_nxdomain_on_the_way() -> None:
    assert search_names("cart.shop", "web", "cluster.local") == [
        "cart.shop.web.svc.cluster.local",  # NXDOMAIN: the noise capture must drop
        "cart.shop.svc.cluster.local",
        "cart.shop.cluster.local",
        "cart.shop",
    ]
    assert search_names("a.b.c.d.e.f", "web", "cluster.local")[0] == "a.b.c.d.e.f"


def test_the_first_existing_search_name_wins() -> None:
    layout = plan_of(LAYOUT)
    zone = build_zone(layout, layout.pods)
    assert first_match(zone, "cart", "shop") == "cart.shop.svc.cluster.local"
    assert first_match(zone, "cart.shop", "data") == "cart.shop.svc.cluster.local"
    assert first_match(zone, "api.stripe.com", "shop") == "api.stripe.com"
    assert first_match(zone, "cart", "data") is None


def test_a_big_answer_is_in_the_hosts_file_once_per_address() -> None:
    layout = bundled("dns-tcp-ipv6")
    text = build_zone(layout, layout.pods).hosts_text()
    assert sum(1 for line in text.splitlines() if line.endswith(" cdn.example.com")) == 40


def test_resolv_conf_is_the_kubelets_with_ndots_5_and_optional_tcp() -> None:
    layout = bundled("dns-tcp-ipv6")
    client = next(p for p in layout.pods if p.ref == "web/client")
    tcp = next(p for p in layout.pods if p.ref == "web/tcp-resolver")
    assert resolv_conf(client, "cluster.local", ["10.96.0.10"]) == (
        "search web.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 10.96.0.10\n"
        "options ndots:5\n"
    )
    assert resolv_conf(tcp, "cluster.local", ["10.96.0.10"]).endswith("options ndots:5 use-vc\n")
    assert f"{client.ips[0]}\t{client.name}" in hosts_file(client)


def test_churn_changes_the_records_of_headless_services() -> None:
    layout = plan_of(
        "name: t\nworkloads: [{namespace: d, name: db, kind: StatefulSet, replicas: 2, "
        "service: {name: db, ports: [1], headless: true}}]\nchurn: [{at: 3, delete: d/db}]"
    )
    before = build_zone(layout, layout.pods_in_phase(0))
    after = build_zone(layout, layout.pods_in_phase(1))
    assert before.exists("db-1.db.d.svc.cluster.local")
    assert not after.exists("db-1.db.d.svc.cluster.local")


def test_a_cluster_dns_with_an_upstream_answers_its_domain_and_forwards_the_rest() -> None:
    upstream = bundled("dns-upstream")
    assert upstream.upstream_dns == UPSTREAM_DNS and UPSTREAM_DNS in upstream.internet_ips
    own = build_zone(upstream, upstream.pods, externals=False)
    assert not own.exists("api.github.com") and own.exists("server.api.svc.cluster.local")
    conf = dnsmasq_conf(own, "/h", ["10.244.0.2"], "/log", False, upstream=UPSTREAM_DNS)
    assert "local=/cluster.local/" in conf and f"server={UPSTREAM_DNS}" in conf
    assert "local=/#/" not in conf
    assert external_zone(upstream).lookup("api.github.com") == ("203.0.113.20",)
