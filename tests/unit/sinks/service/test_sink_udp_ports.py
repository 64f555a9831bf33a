"""UDP ports in the SIEM feeds: one record per edge event names one protocol, UDP
for an edge seen on UDP ports only (CEF ``proto=UDP``, ECS ``network.transport``
``udp`` and IANA number 17, OCSF ``connection_info`` ``udp``/17), TCP otherwise;
every port of both protocols stays in the feed's own fields."""

from __future__ import annotations

from callmap.wire import Edge, Endpoint
from sinks.service.formats.cef import cef_message
from sinks.service.formats.ecs import ecs_document
from sinks.service.formats.ocsf import ocsf_event

CART = Endpoint(type="workload", namespace="shop", name="cart", kind="Deployment")
DNS = Endpoint(type="workload", namespace="kube-system", name="coredns", kind="Deployment")


def edge(ports: tuple[int, ...], udp_ports: tuple[int, ...]) -> Edge:
    return Edge(
        edge_id="e1",
        event="new",
        cluster="prod",
        client=CART,
        server=DNS,
        ports=ports,
        udp_ports=udp_ports,
        sources=("socket-client",),
        first_seen=1_700_000_000.0,
        last_seen=1_700_000_060.0,
    )


UDP_ONLY = edge((), (53,))
MIXED = edge((443,), (53, 5353))
TCP_ONLY = edge((443,), ())


def extension(message: str) -> dict[str, str]:
    """CEF extension keys and values (the test's values hold no spaces or escapes)."""
    _, _, _, _, _, _, _, fields = message.split("|", 7)
    return dict(pair.split("=", 1) for pair in fields.split(" "))


def test_cef_names_udp_for_a_udp_only_edge_and_lists_every_port() -> None:
    udp = extension(cef_message(UDP_ONLY))
    assert (udp["proto"], udp["dpt"], udp["cs4Label"], udp["cs4"]) == (
        "UDP",
        "53",
        "ports",
        "53/udp",
    )
    mixed = extension(cef_message(MIXED))
    assert (mixed["proto"], mixed["dpt"], mixed["cs4"]) == ("TCP", "443", "443,53/udp,5353/udp")
    tcp = extension(cef_message(TCP_ONLY))
    assert (tcp["proto"], tcp["dpt"], tcp["cs4"]) == ("TCP", "443", "443")


def test_ecs_network_transport_is_udp_for_a_udp_only_edge() -> None:
    udp = ecs_document(UDP_ONLY)
    assert udp["network"] == {"transport": "udp", "iana_number": "17", "direction": "internal"}
    assert udp["destination"]["port"] == 53
    assert (udp["callmap"]["ports"], udp["callmap"]["udp_ports"]) == ([], [53])
    mixed = ecs_document(MIXED)
    assert (mixed["network"]["transport"], mixed["network"]["iana_number"]) == ("tcp", "6")
    assert mixed["destination"]["port"] == 443
    assert (mixed["callmap"]["ports"], mixed["callmap"]["udp_ports"]) == ([443], [53, 5353])
    assert "udp_ports" not in ecs_document(TCP_ONLY)["callmap"]


def test_ocsf_connection_info_is_udp_17_for_a_udp_only_edge() -> None:
    udp = ocsf_event(UDP_ONLY)
    assert udp["connection_info"] == {"protocol_name": "udp", "protocol_num": 17, "direction_id": 0}
    assert udp["dst_endpoint"]["port"] == 53
    callmap = udp["unmapped"]["callmap"]
    assert (callmap["ports"], callmap["udp_ports"]) == ([], [53])
    mixed = ocsf_event(MIXED)
    assert mixed["connection_info"] == {
        "protocol_name": "tcp",
        "protocol_num": 6,
        "direction_id": 0,
    }
    assert mixed["dst_endpoint"]["port"] == 443
    assert mixed["unmapped"]["callmap"]["udp_ports"] == [53, 5353]
    assert "udp_ports" not in ocsf_event(TCP_ONLY)["unmapped"]["callmap"]
