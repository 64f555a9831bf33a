"""A fixed, realistic mix of DNS responses, written by dnspython (whose writer
compresses names as real servers do): the parser bench's corpus, and a unit
test's, so that both read the same messages."""

from __future__ import annotations

import ipaddress
import random

import dns.message
import dns.rrset

_CLUSTER = "svc.cluster.local"
_NAMESPACES = ("default", "shop", "payments", "kube-system", "observability")
_SERVICES = ("web", "api", "cart", "checkout", "redis-master", "postgres", "kafka-0", "grafana")
_EXTERNAL = ("api.stripe.com", "s3.eu-west-1.amazonaws.com", "github.com", "pypi.org")
_CDN = ("edge.fastly.net", "d1.cloudfront.net", "lb.akamaiedge.net")


def _response(qname: str, qtype: str, records: list[tuple[str, int, str, list[str]]]) -> bytes:
    query = dns.message.make_query(qname, qtype, use_edns=True)
    response = dns.message.make_response(query)
    for owner, ttl, rtype, values in records:
        response.answer.append(dns.rrset.from_text(owner + ".", ttl, "IN", rtype, *values))
    wire: bytes = response.to_wire()
    return wire


def _ipv4(rng: random.Random) -> str:
    return str(ipaddress.IPv4Address(rng.getrandbits(32)))


def _ipv6(rng: random.Random) -> str:
    return str(ipaddress.IPv6Address((0xFD00 << 112) | rng.getrandbits(64)))


def build_corpus(size: int = 400, seed: int = 7) -> list[bytes]:
    """Return `size` response messages in a fixed, realistic mix."""
    rng = random.Random(seed)
    corpus: list[bytes] = []
    while len(corpus) < size:
        service = f"{rng.choice(_SERVICES)}.{rng.choice(_NAMESPACES)}.{_CLUSTER}"
        kind = rng.randrange(10)
        if kind < 4:  # a ClusterIP service
            corpus.append(_response(service, "A", [(service, 30, "A", [_ipv4(rng)])]))
        elif kind == 4:  # a headless service: one A per ready pod
            pods = [_ipv4(rng) for _ in range(rng.randint(2, 5))]
            corpus.append(_response(service, "A", [(service, 30, "A", pods)]))
        elif kind == 5:
            corpus.append(_response(service, "AAAA", [(service, 30, "AAAA", [_ipv6(rng)])]))
        elif kind == 6:  # a pod name
            address = _ipv4(rng)
            name = f"{address.replace('.', '-')}.{rng.choice(_NAMESPACES)}.pod.cluster.local"
            corpus.append(_response(name, "A", [(name, 30, "A", [address])]))
        else:  # an external name behind a CNAME chain of one to three links
            name = rng.choice(_EXTERNAL)
            hops = [f"h{rng.randrange(99)}.{rng.choice(_CDN)}" for _ in range(kind - 6)]
            records = []
            for owner, target in zip([name, *hops], hops, strict=False):
                records.append((owner, rng.randint(60, 300), "CNAME", [target + "."]))
            addresses = [_ipv4(rng) for _ in range(rng.randint(1, 4))]
            qtype = "A"
            if rng.random() < 0.3:
                qtype, addresses = "AAAA", [_ipv6(rng) for _ in addresses]
            records.append((hops[-1], rng.randint(20, 60), qtype, addresses))
            corpus.append(_response(name, qtype, records))
    return corpus
