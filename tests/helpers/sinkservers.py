"""Real targets for the sink tests: a PostgreSQL server and an rsyslog receiver.

PostgreSQL comes from Debian's packages (``postgresql``): ``initdb`` and
``pg_ctl`` on a free loopback port in a temporary directory, run as the
``postgres`` user because the server refuses to run as root; a Docker engine,
when one answers, runs the official image through testcontainers instead.
Missing binaries skip the tests, loudly.

rsyslog (Debian's ``rsyslog`` and ``rsyslog-gnutls``) runs in the foreground
with a generated configuration: UDP, TCP (octet counting) and TLS inputs on
loopback, with a CA and server certificate made by the openssl CLI, writing
every message it parsed as one JSON line (its own view of the RFC 5424 fields
plus the raw message). Both servers are started and stopped by pid, and can be
stopped and started again to play an outage.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.process import accepts_connections, free_port

RUNTIME_ERROR = "{} not found: apt-get install {} (the sink tests need a real one)"


def _tool(name: str, package: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        pytest.skip(RUNTIME_ERROR.format(name, package))
    return found


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not accepts_connections(port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")
        time.sleep(0.05)


class PgServer:
    """A PostgreSQL cluster of our own on loopback."""

    def __init__(self, base: Path) -> None:
        self.initdb = _tool("initdb", "postgresql")
        self.pg_ctl = _tool("pg_ctl", "postgresql")
        self.base = base
        self.data = base / "data"
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        command = ["runuser", "-u", self.user, "--", *args] if self.user else list(args)
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "pw").write_text(self.password)
        if self.user:
            owner = pwd.getpwnam(self.user)
            for path in (self.base, self.base / "pw"):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self._run(
            self.initdb, "-D", str(self.data), "-U", "callmap", "--auth=scram-sha-256",
            f"--pwfile={self.base / 'pw'}", "-E", "UTF8", "--locale=C",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            self.pg_ctl,
            "-D",
            str(self.data),
            "-l",
            str(self.base / "log"),
            "-o",
            options,
            "-w",
            "start",
        )
        _wait_port(self.port)

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://callmap:{self.password}@127.0.0.1:{self.port}/{database}"


def _docker_answers() -> bool:
    if os.environ.get("CALLMAP_TEST_DOCKER", "auto") == "no" or shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A running PostgreSQL: ``.dsn(db)``; ``.stop()``/``.start()`` unless it is a container."""
    if _docker_answers():
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs

        port, password = free_port(), secrets.token_hex(12)
        container = (
            DockerContainer("postgres:15")
            .with_bind_ports(5432, port)
            .with_env("POSTGRES_USER", "callmap")
            .with_env("POSTGRES_PASSWORD", password)
        )
        with container:
            wait_for_logs(container, "database system is ready to accept connections", timeout=120)
            _wait_port(port)
            server = PgServer.__new__(PgServer)
            server.port, server.password = port, password
            yield server
        return
    base = Path(tempfile.mkdtemp(prefix="callmap-pg-"))
    server = PgServer(base)
    server.init()
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)


RSYSLOG_CONF = """
global(workDirectory="{dir}" maxMessageSize="64k"
       defaultNetstreamDriverCAFile="{dir}/ca.pem"
       defaultNetstreamDriverCertFile="{dir}/server.pem"
       defaultNetstreamDriverKeyFile="{dir}/server.key")
module(load="imudp")
module(load="imtcp" maxSessions="200")
template(name="parsed" type="list" option.jsonf="on") {{
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="raw" name="rawmsg" format="jsonf")
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="input" name="inputname" format="jsonf")
  property(outname="pri" name="pri" format="jsonf")
}}
ruleset(name="received") {{
  action(type="omfile" file="{dir}/received.jsonl" template="parsed"
         flushOnTXEnd="on" asyncWriting="off")
}}
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="received")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="received")
input(type="imtcp" address="127.0.0.1" port="{tls}" ruleset="received"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
"""


def _certificates(directory: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=callmap test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost")  # fmt: skip
    (directory / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2",
            "-extfile", "san.cnf")  # fmt: skip


class RsyslogServer:
    """rsyslogd in the foreground, receiving on three loopback ports."""

    def __init__(self, directory: Path) -> None:
        self.binary = shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin")
        if self.binary is None:
            pytest.skip(RUNTIME_ERROR.format("rsyslogd", "rsyslog rsyslog-gnutls"))
        if shutil.which("openssl") is None:
            pytest.skip(RUNTIME_ERROR.format("openssl", "openssl"))
        self.dir = directory
        self.udp, self.tcp, self.tls = free_port(), free_port(), free_port()
        self.ca_file = str(directory / "ca.pem")
        self.output = directory / "received.jsonl"
        self._process: subprocess.Popen[bytes] | None = None
        _certificates(directory)
        config = RSYSLOG_CONF.format(dir=directory, udp=self.udp, tcp=self.tcp, tls=self.tls)
        (directory / "rsyslog.conf").write_text(config)

    def start(self) -> None:
        assert self.binary is not None
        self._process = subprocess.Popen(
            [self.binary, "-n", "-f", str(self.dir / "rsyslog.conf"), "-i", str(self.dir / "pid")],
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "rsyslogd.log").open("ab"),
        )
        _wait_port(self.tcp)
        _wait_port(self.tls)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)

    def received(self, hostname: str) -> list[dict[str, str]]:
        """Every message rsyslog wrote from sender ``hostname``, in arrival order."""
        if not self.output.exists():
            return []
        lines = self.output.read_text(errors="replace").splitlines()
        messages = [json.loads(line) for line in lines if line.strip()]
        return [m for m in messages if m.get("hostname") == hostname]

    def wait_for(self, hostname: str, count: int, timeout: float = 20.0) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while len(messages := self.received(hostname)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return messages


@pytest.fixture(scope="session")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RsyslogServer]:
    server = RsyslogServer(tmp_path_factory.mktemp("rsyslog"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
