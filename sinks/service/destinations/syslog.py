"""RFC 5424 syslog carrying CEF or ECS, over UDP, TCP or TLS (``callmap sink syslog``).

- UDP (RFC 5426): one message per datagram, cut to ``max_message`` bytes
  (a CEF record; an ECS message that long is not sent but counted as
  ``too_long``, since cut JSON is no JSON).
  Fire and forget: a receiver that is down is not noticed.
- TCP (RFC 6587) and TLS (RFC 5425): octet-counting framing on one long-lived
  connection. A flush writes every frame and waits until the kernel took them;
  a connection the receiver closed is noticed before the next flush and made
  again. There are no application acknowledgements in syslog, so a receiver
  that dies while holding unread data loses it; the event key in every message
  lets the SIEM drop the duplicates that resending produces.

Connection failures and timeouts are :class:`TemporaryError`; a certificate
that does not verify is :class:`PermanentError` (a configuration to fix).
Tombstones have no syslog form and are skipped, counted.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from callmap.errors import ConfigError, PermanentError, TemporaryError
from sinks.changes import Change
from sinks.service.destination import Sink
from sinks.service.formats.cef import SyslogFormat, octet_frame, syslog_message
from sinks.service.journal import OffsetJournal
from sinks.service.stats import SinkStats

log = logging.getLogger(__name__)

Transport = Literal["udp", "tcp", "tls"]
DEFAULT_PORTS = {"udp": 514, "tcp": 601, "tls": 6514}


@dataclass(frozen=True, slots=True)
class SyslogTarget:
    """Where messages go: ``udp://host:514``, ``tcp://host:601`` or ``tls://host:6514``."""

    transport: Transport
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> SyslogTarget:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ConfigError(
                f"syslog target {url!r}: expected udp://, tcp:// or tls://HOST[:PORT]"
            )
        try:
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError as exc:
            raise ConfigError(f"syslog target {url!r}: {exc}") from None
        return cls(scheme, parts.hostname, port)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class TlsOptions:
    ca_file: str | None = None
    """CA bundle that signs the receiver's certificate (default: the system's)."""
    cert_file: str | None = None
    """Client certificate, for receivers that authenticate senders."""
    key_file: str | None = None
    server_name: str | None = None
    """Name to verify the receiver's certificate against (default: the target host)."""

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


@contextmanager
def map_network_errors(action: str) -> Iterator[None]:
    try:
        yield
    except ssl.SSLCertVerificationError as exc:
        raise PermanentError(
            f"{action}: the receiver's certificate does not verify: {exc}"
        ) from exc
    except (OSError, TimeoutError, EOFError) as exc:  # ssl.SSLError is an OSError
        raise TemporaryError(f"{action}: {exc or type(exc).__name__}") from exc


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.error: Exception | None = None

    def error_received(self, exc: Exception) -> None:
        self.error = exc


class SyslogSink(Sink):
    """Sends each edge event as one syslog message."""

    kind = "syslog"

    def __init__(
        self,
        target: SyslogTarget,
        form: SyslogFormat,
        *,
        tls: TlsOptions | None = None,
        journal: OffsetJournal | None = None,
        max_message: int = 8192,
        timeout: float = 10.0,
        stats: SinkStats | None = None,
    ) -> None:
        super().__init__(stats, journal if journal is not None else OffsetJournal())
        self.target = target
        self.form = form
        self.tls = tls or TlsOptions()
        self.max_message = max_message
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._udp: tuple[asyncio.DatagramTransport, _Datagrams] | None = None

    @property
    def _where(self) -> str:
        return f"{self.target.transport}://{self.target.host}:{self.target.port}"

    async def open(self) -> None:
        await super().open()
        await self._connect()

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        with map_network_errors(f"connect to syslog at {self._where}"):
            if self.target.transport == "udp":
                if self._udp is None:
                    transport, protocol = await loop.create_datagram_endpoint(
                        _Datagrams, remote_addr=(self.target.host, self.target.port)
                    )
                    self._udp = (transport, protocol)
                return
            if self._writer is not None and not self._connection_lost():
                return
            await self._disconnect()
            context = self.tls.context() if self.target.transport == "tls" else None
            server_name = (self.tls.server_name or self.target.host) if context else None
            async with asyncio.timeout(self.timeout):
                self._reader, self._writer = await asyncio.open_connection(
                    self.target.host, self.target.port, ssl=context, server_hostname=server_name
                )
            log.info("connected to syslog at %s", self._where)

    def _connection_lost(self) -> bool:
        assert self._reader is not None and self._writer is not None
        return self._writer.is_closing() or self._reader.at_eof()

    async def _disconnect(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                async with asyncio.timeout(2):
                    await writer.wait_closed()
            except (OSError, TimeoutError) as exc:
                log.debug("closing the syslog connection: %s", exc)

    def _messages(self, batch: Sequence[Change]) -> list[bytes]:
        messages = []
        for change in batch:
            if change.edge is None:
                self.stats.skip("tombstone")
                continue
            message = syslog_message(change.edge, self.form)
            if len(message) > self.max_message:
                if not self.form.cuttable:
                    log.warning(
                        "not sending edge %s: its %s message of %d bytes is over --max-message %d",
                        change.edge_id,
                        self.form.payload.upper(),
                        len(message),
                        self.max_message,
                    )
                    self.stats.skip("too_long")
                    continue
                log.warning("syslog message of %d bytes cut to %d", len(message), self.max_message)
                message = message[: self.max_message].decode(errors="ignore").encode()
            messages.append(message)
        return messages

    async def _write(self, batch: Sequence[Change]) -> int:
        messages = self._messages(batch)
        try:
            await self._connect()
            with map_network_errors(f"send to syslog at {self._where}"):
                if self._udp is not None:
                    transport, protocol = self._udp
                    for message in messages:
                        transport.sendto(message)
                    error, protocol.error = protocol.error, None
                    if error is not None:
                        raise error
                else:
                    assert self._writer is not None
                    self._writer.write(b"".join(octet_frame(m) for m in messages))
                    async with asyncio.timeout(self.timeout):
                        await self._writer.drain()
                    if self._connection_lost():
                        raise ConnectionResetError("the receiver closed the connection")
        except TemporaryError:
            await self.close()
            raise
        return len(messages)

    async def close(self) -> None:
        await self._disconnect()
        udp, self._udp = self._udp, None
        if udp is not None:
            udp[0].close()
