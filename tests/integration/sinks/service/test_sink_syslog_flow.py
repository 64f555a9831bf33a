"""The syslog sink against a real rsyslog: RFC 5424 with CEF over UDP, TCP and TLS,
hostile names, crash and replay, and the receiver down for a while."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import pytest

from callmap.errors import PermanentError
from callmap.wire import Edge, Endpoint
from sinks.changes import event_key
from sinks.service.destinations.syslog import SyslogSink, SyslogTarget, TlsOptions
from sinks.service.formats.cef import SyslogFormat
from sinks.service.journal import OffsetJournal

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(90)]


def parse_cef(message: str) -> tuple[list[str], dict[str, str]]:
    """Seven header fields split on unescaped ``|``, then ``key=value`` pairs."""
    parts = re.split(r"(?<!\\)\|", message, maxsplit=7)
    header, extension = parts[:7], parts[7]
    pairs = re.findall(r"(\w+)=((?:[^\\=]|\\.)*?)(?= \w+=|$)", extension)
    unescape = {"n": "\n", "r": "\r"}
    return header, {k: re.sub(r"\\(.)", lambda m: unescape.get(m[1], m[1]), v) for k, v in pairs}


def sink_for(
    rsyslog, transport: str, hostname: str, journal: OffsetJournal | None = None
) -> SyslogSink:
    port = {"udp": rsyslog.udp, "tcp": rsyslog.tcp, "tls": rsyslog.tls}[transport]
    return SyslogSink(
        SyslogTarget.parse(f"{transport}://127.0.0.1:{port}"),
        SyslogFormat(hostname=hostname, procid="7"),
        tls=TlsOptions(ca_file=rsyslog.ca_file, server_name="localhost"),
        journal=journal,
        timeout=2,
    )


def events(count: int, name: str = "api.example.org") -> list[Edge]:
    return [
        Edge(
            edge_id=f"sys-{index % 10}",
            event="new" if index < 10 else "refresh",
            cluster="test",
            client=Endpoint(
                type="workload", namespace="shop", name=f"c{index % 10}", kind="Deployment"
            ),
            server=Endpoint(type="external", dns_name=name),
            ports=(443,),
            first_seen=1.0,
            last_seen=1.0 + index,
        )
        for index in range(count)
    ]


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_every_edge_event_reaches_rsyslog_and_parses(
    edges_topic, rsyslog, corpus_edges, transport: str
) -> None:
    hostname = f"t-{uuid.uuid4().hex[:8]}"
    await edges_topic.produce(corpus_edges)
    await edges_topic.run_to_end(sink_for(rsyslog, transport, hostname), f"syslog-{transport}")
    received = rsyslog.wait_for(hostname, len(corpus_edges))
    assert len(received) == len(corpus_edges)
    by_event = {event_key(edge): edge for edge in corpus_edges}
    for message in received:
        assert (message["version"], message["app"], message["procid"]) == ("1", "callmap", "7")
        header, fields = parse_cef(message["msg"])
        edge = by_event[fields["externalId"]]
        assert message["msgid"] == f"edge-{edge.event}" and header[4] == f"edge-{edge.event}"
        assert f'edgeId="{edge.edge_id}"' in message["sd"]
        assert fields["cs1"] == edge.edge_id and fields["deviceExternalId"] == "prod"
        if edge.server.type == "external":
            # the hostile name arrives whole: line breaks escaped, controls made visible
            expected = re.sub(r"[\x00-\x09\x0b-\x1f\u202e]", "\ufffd", edge.server.dns_name or "")
            assert fields["dhost"] == expected


async def test_a_crash_between_send_and_commit_sends_nothing_twice(
    edges_topic, rsyslog, tmp_path: Path
) -> None:
    hostname = f"t-{uuid.uuid4().hex[:8]}"
    produced = events(30)
    await edges_topic.produce(produced)
    state = tmp_path / "syslog.journal.json"
    sink = sink_for(rsyslog, "tcp", hostname, OffsetJournal(state))
    await edges_topic.crash_after_flush(sink, "syslog-crash", 12, batch_size=12)
    await edges_topic.run_to_end(
        sink_for(rsyslog, "tcp", hostname, OffsetJournal(state)), "syslog-crash"
    )
    received = rsyslog.wait_for(hostname, len(produced))
    await asyncio.sleep(0.3)  # and nothing more arrives
    keys = [parse_cef(m["msg"])[1]["externalId"] for m in rsyslog.received(hostname)]
    assert sorted(keys) == sorted(event_key(edge) for edge in produced) and len(received) == 30


async def test_the_receiver_down_for_a_while_loses_nothing(edges_topic, rsyslog) -> None:
    hostname = f"t-{uuid.uuid4().hex[:8]}"
    sink = sink_for(rsyslog, "tls", hostname)
    runner = edges_topic.runner(sink, "syslog-outage")
    await runner.start()
    task = asyncio.create_task(runner.run(until_caught_up=True))
    produced = events(40)
    try:
        await asyncio.to_thread(rsyslog.stop)
        await edges_topic.produce(produced)
        while sink.stats.retried < len(produced):
            assert not task.done()
            await asyncio.sleep(0.05)
    finally:
        await asyncio.to_thread(rsyslog.start)
    await asyncio.wait_for(task, 30)
    await runner.close()
    received = rsyslog.wait_for(hostname, len(produced))
    keys = {parse_cef(m["msg"])[1]["externalId"] for m in received}
    assert keys == {event_key(edge) for edge in produced}
    order = [parse_cef(m["msg"])[1]["rt"] for m in received if "cs1=sys-3 " in m["msg"]]
    assert order == sorted(order, key=int)  # an edge's lifecycle arrives in order


async def test_a_certificate_that_does_not_verify_is_permanent(rsyslog) -> None:
    sink = SyslogSink(
        SyslogTarget.parse(f"tls://127.0.0.1:{rsyslog.tls}"),
        SyslogFormat(hostname="h"),
        tls=TlsOptions(server_name="localhost"),  # the system CAs do not know the test CA
    )
    with pytest.raises(PermanentError, match="certificate"):
        await sink.open()
    await sink.close()
