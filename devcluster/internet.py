"""The development cluster's internet: the upstream DNS server and the external hosts.

One network namespace stands for everything outside the cluster. In it:

- dnsmasq answers the names it is given (and NXDOMAIN for every other name,
  as the internet does for a name that does not exist); CoreDNS forwards to it;
- every external address is on the namespace's loopback, and a server of ours
  listens on each (address, port) pair, answering each line it receives with
  ``pong external:<name>``, as lab pods answer ``pong <pod>``.

``python -m devcluster.internet serve CONFIG`` is that server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from callmap.signals import on_stop_signals
from devcluster.layout import INTERNET_ADDRESS, ClusterLayout
from devcluster.network import run
from devtools.process import PidFile

TTL = 30


def hosts_file(zone: Mapping[str, Sequence[str]]) -> str:
    """dnsmasq's ``addn-hosts``: one ``address name`` line per address of each name."""
    return "".join(f"{ip} {name}\n" for name in sorted(zone) for ip in zone[name])


def dnsmasq_config(hosts: Path, log: Path) -> str:
    return "\n".join(
        [
            "no-resolv",
            "no-hosts",
            "local=/#/",  # no upstream: what it does not hold does not exist
            f"addn-hosts={hosts}",
            f"local-ttl={TTL}",
            "bind-interfaces",
            f"listen-address={INTERNET_ADDRESS}",
            "user=root",
            "pid-file=",
            f"log-facility={log}",
            "log-queries",
            "",
        ]
    )


def listeners(
    zone: Mapping[str, Sequence[str]], ports: Mapping[str, Sequence[int]]
) -> list[dict[str, object]]:
    """Each (address, port) the internet serves, with the name it answers for."""
    return [
        {"ip": ip, "port": port, "name": name}
        for name in sorted(zone)
        for ip in zone[name]
        for port in ports.get(name, ())
    ]


@dataclass(frozen=True, slots=True)
class Internet:
    layout: ClusterLayout

    @property
    def directory(self) -> Path:
        return self.layout.directory / "internet"

    def _pid_file(self, role: str) -> PidFile:
        mark = b"dnsmasq" if role == "dns" else b"devcluster.internet"
        return PidFile(self.directory / f"{role}.pid", (mark, str(self.directory).encode()))

    def start(self) -> None:
        """Start the DNS server (empty until :meth:`set_externals`)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        hosts = self.directory / "hosts"
        if not hosts.exists():
            hosts.write_text("")
        conf = self.directory / "dnsmasq.conf"
        conf.write_text(dnsmasq_config(hosts, self.directory / "dns.log"))
        if self._pid_file("dns").recorded() is None:
            command = ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}"]
            self._spawn("dns", command)

    def set_externals(
        self, zone: Mapping[str, Sequence[str]], ports: Mapping[str, Sequence[int]]
    ) -> None:
        """Serve these names (name -> addresses) and ports (name -> ports) from now on."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for ip in sorted({ip for ips in zone.values() for ip in ips}):
            family = "-6" if ":" in ip else "-4"
            prefix = 128 if ":" in ip else 32
            add = ["ip", family, "-n", self.layout.internet_netns, "addr", "replace"]
            run([*add, f"{ip}/{prefix}", "dev", "lo"])
        (self.directory / "hosts").write_text(hosts_file(zone))
        dns = self._pid_file("dns").recorded()
        if dns is not None:
            os.kill(dns, signal.SIGHUP)  # dnsmasq re-reads its hosts files
        config = self.directory / "listeners.json"
        config.write_text(json.dumps(listeners(zone, ports)))
        self._pid_file("listeners").stop(timeout=5)
        command = [sys.executable, "-m", "devcluster.internet", "serve", str(config)]
        self._spawn("listeners", command)

    def stop(self) -> bool:
        stopped = [self._pid_file(role).stop(timeout=5) for role in ("listeners", "dns")]
        return any(stopped)

    def _spawn(self, role: str, command: list[str]) -> None:
        netns = ["ip", "netns", "exec", self.layout.internet_netns]
        self._pid_file(role).spawn([*netns, *command], self.directory / f"{role}.log")


async def serve(config: Path) -> None:
    """Answer ``pong external:<name>`` to every line, on every configured address and port."""

    def handler(
        name: str,
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):  # a caller that went away mid-answer
                while await reader.readline():
                    writer.write(f"pong external:{name}\n".encode())
                    await writer.drain()
            writer.close()

        return answer

    servers = [
        await asyncio.start_server(handler(str(item["name"])), str(item["ip"]), int(item["port"]))
        for item in json.loads(config.read_text())
    ]
    stop = asyncio.Event()
    on_stop_signals(stop.set)
    await stop.wait()
    for server in servers:
        server.close()


if __name__ == "__main__":
    if sys.argv[1:2] != ["serve"] or len(sys.argv) != 3:
        sys.exit("usage: python -m devcluster.internet serve CONFIG")
    asyncio.run(serve(Path(sys.argv[2])))
