"""The process in every lab pod: it serves the pod's ports and makes its calls.

Run as ``python -m lab.caller SPEC.json`` inside the pod's network namespace
(``ip netns exec``, which also bind-mounts the pod's resolv.conf and hosts),
or as ``python -m lab.caller --env VARIABLE`` with the spec in that
environment variable (a container of the real-cluster lab). Standard library
only, so that a pod starts fast. The spec says::

    {"pod": "shop/frontend-...", "listen": [80], "listen_udp": [8125], "hold": false,
     "status": "PATH",
     "calls": [{"to": "cartservice", "port": 7070, "rate": 2.0, "long_lived": false,
                "before_capture": false, "family": "any", "protocol": "tcp"}]}

and optionally ``"log": "PATH"`` (the call log below) and ``"release_file":
"PATH"`` (with ``hold``: the calls are released when that file exists, for a
process nobody can signal, such as a pod's).

Promises:

- it listens on every ``listen`` port (IPv4 and IPv6) and answers each line
  it receives with ``pong <pod>``; on every ``listen_udp`` port it answers
  each ``ping`` datagram with a ``pong <pod>`` datagram, sent from the
  address the ping was sent to (a multi-homed namespace, such as the lab's
  "internet", would otherwise answer from another of its addresses, which the
  caller's connected socket drops);
- every call resolves its name through the C library (the pod's resolv.conf:
  search path, ``ndots:5``, TCP when the answer is truncated or ``use-vc``),
  connects over TCP to the addresses in the order the resolver gives until one
  accepts, sends ``ping <pod>`` and reads the answer; short calls repeat
  ``rate`` times a second, a long-lived one keeps its connection, pings over
  it every few seconds and reconnects when it breaks. A ``"protocol": "udp"``
  call sends one ``ping <pod>`` datagram from a new socket (so a new flow)
  to the addresses in the resolver's order until one answers within
  :data:`CONNECT_TIMEOUT` (an ICMP unreachable fails an address at once),
  ``rate`` times a second; it is never long-lived;
- with ``hold``, only ``before_capture`` calls run until SIGUSR1 (or the
  ``release_file``) releases the others; SIGTERM ends it;
- twice a second it rewrites ``status`` (atomically) with whether it listens
  and each call's successes, failures and last error;
- with ``log``, every call attempt (every ping of a long-lived connection)
  appends a JSON line ``{"t", "pod", "to", "addr", "port", "ok", "peer"}``:
  the time, the name or address as addressed, the address it connected to
  (or last tried; null when nothing resolved), whether the server answered,
  and the server's answer (``pong <ns>/<pod>``, ``pong external:<name>``);
  a long-lived connection's lines add ``opened`` (when it was opened), a
  failure's ``error``, a UDP call's ``"protocol": "udp"`` (a line without it
  is TCP). The first attempt with a given outcome (``to``, ``addr``,
  ``port``, ``protocol``, ``ok``, ``peer``, ``opened``) is always written,
  repeats at most every :data:`LOG_INTERVAL` seconds, so that the file stays
  small.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONNECT_TIMEOUT = 2.0
"""Seconds a connect or an answer may take. Bounded with ``asyncio.timeout``, not
``asyncio.wait_for``: on Python 3.11 ``wait_for`` loses a cancellation that comes as
its awaited call completes, and a call loop that lost SIGTERM's cancellation kept
calling, so the caller never exited."""
LONG_LIVED_PING = 5.0
LOG_INTERVAL = 5.0
"""Seconds between two log lines with the same outcome, per pod."""
RELEASE_POLL = 0.2
FAMILIES = {"any": socket.AF_UNSPEC, "4": socket.AF_INET, "6": socket.AF_INET6}
DATAGRAM = 512
"""Bytes read of a datagram: a ping or a pong is a line."""
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
"""``struct in_pktinfo``: the address a datagram was sent to, and to send from (Linux)."""


@dataclass
class CallState:
    spec: dict[str, Any]
    ok: int = 0
    failed: int = 0
    last_error: str | None = None
    last_peer: str | None = None
    open: bool = False
    last_addr: str | None = None
    """The address last connected to or tried (None: the name did not resolve)."""

    def report(self) -> dict[str, Any]:
        return {
            "to": self.spec["to"],
            "port": self.spec["port"],
            "protocol": protocol_of(self.spec),
            "before_capture": bool(self.spec.get("before_capture")),
            "ok": self.ok,
            "failed": self.failed,
            "open": self.open,
            "last_error": self.last_error,
            "last_peer": self.last_peer,
        }


def protocol_of(call: dict[str, Any]) -> str:
    """A call's transport: ``tcp`` unless the spec says ``udp``."""
    return str(call.get("protocol", "tcp"))


class CallLog:
    """The call log: one JSON line per attempt, repeats of an outcome thinned out."""

    def __init__(self, path: str, pod: str, clock: Callable[[], float] = time.time) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", buffering=1)  # noqa: SIM115  # open for the process's life
        self._pod = pod
        self._clock = clock
        self._last: dict[tuple[object, ...], float] = {}

    def record(
        self,
        state: CallState,
        ok: bool,
        peer: str | None = None,
        opened: float | None = None,
        error: str | None = None,
    ) -> None:
        now = self._clock()
        to, port = str(state.spec["to"]), int(state.spec["port"])
        protocol = protocol_of(state.spec)
        key = (to, state.last_addr, port, protocol, ok, peer, opened)
        last = self._last.get(key)
        if last is not None and now - last < LOG_INTERVAL:
            return
        self._last[key] = now
        line: dict[str, Any] = {"t": now, "pod": self._pod, "to": to, "addr": state.last_addr}
        line |= {"port": port, "ok": ok, "peer": peer}
        if protocol != "tcp":
            line["protocol"] = protocol
        if opened is not None:
            line["opened"] = opened
        if error is not None:
            line["error"] = error
        self._file.write(json.dumps(line) + "\n")

    def close(self) -> None:
        self._file.close()


@dataclass
class Caller:
    spec: dict[str, Any]
    calls: list[CallState] = field(default_factory=list)
    listening: bool = False
    released: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    log: CallLog | None = None

    @property
    def pod(self) -> str:
        return str(self.spec["pod"])

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        loop.add_signal_handler(signal.SIGINT, self.stop.set)
        loop.add_signal_handler(signal.SIGUSR1, self.released.set)
        if not self.spec.get("hold"):
            self.released.set()
        if self.spec.get("log"):
            self.log = CallLog(str(self.spec["log"]), self.pod)
        servers = [
            await asyncio.start_server(self._serve, host=None, port=port, reuse_address=True)
            for port in self.spec.get("listen", [])
        ]
        datagrams = [
            sock for port in self.spec.get("listen_udp", []) for sock in udp_sockets(int(port))
        ]
        for sock in datagrams:
            loop.add_reader(sock.fileno(), self._answer_datagram, sock)
        self.listening = True
        self.calls = [CallState(call) for call in self.spec.get("calls", [])]
        tasks = [asyncio.create_task(self._status_loop(), name="status")]
        if self.spec.get("release_file") and not self.released.is_set():
            tasks.append(asyncio.create_task(self._release_when_file(), name="release"))
        for index, state in enumerate(self.calls):
            body = self._long_lived(state) if state.spec["long_lived"] else self._repeat(state)
            tasks.append(asyncio.create_task(body, name=f"call-{index}"))
        await self.stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in servers:
            server.close()
        for sock in datagrams:
            loop.remove_reader(sock.fileno())
            sock.close()
        self._write_status()
        if self.log is not None:
            self.log.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                if not line.startswith(b"ping"):
                    break
                writer.write(f"pong {self.pod}\n".encode())
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass  # a client that goes away mid-call is the client's failure to count
        finally:
            writer.close()

    def _answer_datagram(self, sock: socket.socket) -> None:
        """Answer a ``ping`` datagram from the address it was sent to (its IP_PKTINFO)."""
        try:
            data, ancillary, _flags, sender = sock.recvmsg(DATAGRAM, socket.CMSG_SPACE(64))
        except OSError:
            return  # nothing to read after all (another wake-up took it)
        if not data.startswith(b"ping"):
            return
        answer = f"pong {self.pod}\n".encode()
        with contextlib.suppress(OSError):  # a client gone is the client's failure to count
            sock.sendmsg([answer], _reply_from(ancillary), 0, sender)

    async def _release_when_file(self) -> None:
        path = Path(str(self.spec["release_file"]))
        while not path.exists():
            await asyncio.sleep(RELEASE_POLL)
        self.released.set()

    async def _wait_turn(self, state: CallState) -> None:
        if not state.spec.get("before_capture"):
            await self.released.wait()

    async def _repeat(self, state: CallState) -> None:
        await self._wait_turn(state)
        interval = 1.0 / float(state.spec["rate"])
        await asyncio.sleep(random.uniform(0, min(interval, 1.0)))  # pods do not call in lockstep
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                peer = await self._one_call(state)
                state.ok += 1
                self._logged(state, True, peer)
            except (TimeoutError, OSError, ConnectionError) as exc:
                self._failed(state, exc)
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, interval * random.uniform(0.9, 1.1) - elapsed))

    async def _long_lived(self, state: CallState) -> None:
        await self._wait_turn(state)
        while not self.stop.is_set():
            try:
                reader, writer = await self._connect(state)
            except (TimeoutError, OSError, ConnectionError) as exc:
                self._failed(state, exc)
                await asyncio.sleep(1.0)
                continue
            state.open = True
            opened = time.time()
            try:
                while not self.stop.is_set():
                    peer = await self._exchange(reader, writer)
                    state.ok += 1
                    self._logged(state, True, peer, opened)
                    await asyncio.sleep(LONG_LIVED_PING)
            except (TimeoutError, OSError, ConnectionError) as exc:
                self._failed(state, exc, opened)
            finally:
                state.open = False
                writer.close()
            await asyncio.sleep(1.0)

    async def _one_call(self, state: CallState) -> str:
        """One short call, TCP or UDP; the server's answer."""
        if protocol_of(state.spec) == "udp":
            return await self._datagram_call(state)
        reader, writer = await self._connect(state)
        try:
            return await self._exchange(reader, writer)
        finally:
            writer.close()

    async def _datagram_call(self, state: CallState) -> str:
        """Ping in one datagram from a new socket, to each address until one answers."""
        loop = asyncio.get_running_loop()
        error: Exception = OSError(f"no addresses for {state.spec['to']}")
        for address_family, _type, _proto, _name, sockaddr in await _resolve(
            state, socket.SOCK_DGRAM
        ):
            state.last_addr = str(sockaddr[0])
            with socket.socket(address_family, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                try:
                    sock.connect(sockaddr)  # a connected socket hears ICMP unreachable
                    await loop.sock_sendall(sock, f"ping {self.pod}\n".encode())
                    async with asyncio.timeout(CONNECT_TIMEOUT):
                        answer = await loop.sock_recv(sock, DATAGRAM)
                except (TimeoutError, OSError) as exc:
                    error = exc
                    continue
            if not answer.startswith(b"pong"):
                raise ConnectionError(f"the server answered {answer[:40]!r}")
            state.last_peer = str(sockaddr[0])
            return answer.decode(errors="replace").strip()
        raise error

    async def _connect(self, state: CallState) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        error: Exception = OSError(f"no addresses for {state.spec['to']}")
        for _family, _type, _proto, _name, sockaddr in await _resolve(state, socket.SOCK_STREAM):
            state.last_addr = str(sockaddr[0])
            try:
                connection = asyncio.open_connection(str(sockaddr[0]), int(sockaddr[1]))
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    reader, writer = await connection
            except (TimeoutError, OSError) as exc:
                error = exc
                continue
            state.last_peer = str(sockaddr[0])
            return reader, writer
        raise error

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        """Ping; the server's answer (``pong <who>``)."""
        writer.write(f"ping {self.pod}\n".encode())
        await writer.drain()
        async with asyncio.timeout(CONNECT_TIMEOUT):
            answer = await reader.readline()
        if not answer.startswith(b"pong"):
            raise ConnectionError("the server closed without answering")
        return answer.decode(errors="replace").strip()

    def _failed(self, state: CallState, exc: BaseException, opened: float | None = None) -> None:
        state.failed += 1
        state.last_error = f"{type(exc).__name__}: {exc}"
        self._logged(state, False, None, opened, state.last_error)

    def _logged(
        self,
        state: CallState,
        ok: bool,
        peer: str | None,
        opened: float | None = None,
        error: str | None = None,
    ) -> None:
        if self.log is not None:
            self.log.record(state, ok, peer, opened, error)

    async def _status_loop(self) -> None:
        while True:
            self._write_status()
            await asyncio.sleep(0.5)

    def _write_status(self) -> None:
        path = self.spec.get("status")
        if not path:
            return
        document = {
            "pod": self.pod,
            "pid": os.getpid(),
            "ts": time.time(),
            "listening": self.listening,
            "released": self.released.is_set(),
            "calls": [state.report() for state in self.calls],
        }
        temporary = Path(f"{path}.tmp")
        temporary.write_text(json.dumps(document))
        temporary.replace(path)


async def _resolve(state: CallState, kind: socket.SocketKind) -> list[Any]:
    """The call's name through the C library (the pod's resolv.conf), in its order."""
    state.last_addr = None
    family = FAMILIES[str(state.spec.get("family", "any"))]
    loop = asyncio.get_running_loop()
    return await loop.getaddrinfo(state.spec["to"], state.spec["port"], family=family, type=kind)


def udp_sockets(port: int) -> list[socket.socket]:
    """Non-blocking UDP sockets on ``port`` for IPv4 and IPv6, told each datagram's
    destination address (IP_PKTINFO, IPV6_RECVPKTINFO), so that answers go out from it."""
    sockets = []
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        sockets.append(sock)
    return sockets


def _reply_from(ancillary: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
    """The ancillary data that sends an answer from the address a datagram was sent to."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            # struct in_pktinfo {ifindex; spec_dst; addr}: send from addr, any interface
            return [(level, kind, bytes(4) + data[8:12] + bytes(4))]
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 20:
            return [(level, kind, data[:16] + bytes(4))]  # struct in6_pktinfo {addr; ifindex}
    return []


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--env":
        spec = json.loads(os.environ[argv[2]])
    elif len(argv) == 2:
        spec = json.loads(Path(argv[1]).read_text())
    else:
        print("usage: python -m lab.caller SPEC.json | --env VARIABLE", file=sys.stderr)
        return 2
    asyncio.run(Caller(spec).run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
