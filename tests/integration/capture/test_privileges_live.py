"""``--drop-to`` on this machine's kernel: after the switch no capability is left but
the packet socket opened before it, the socket scan still reads /proc, and no
other user's process is open to it. Each case runs in a child process (the switch is for good)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[3]

AFTER_THE_SWITCH = """
import json, os, socket
from capture.privileges import capabilities, drop_to
from capture.procscan import scan_proc
packet = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)  # opened as root, kept
drop_to(10002, 10002)
status = open("/proc/self/status").read()
try:
    open("/proc/1/environ", "rb").read()
    environ = "read"
except PermissionError:
    environ = "denied"
try:
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    second = "opened"
except PermissionError:
    second = "denied"
scan = scan_proc("/proc")
print(json.dumps({
    "ids": [os.getresuid(), os.getresgid(), os.getgroups()],
    "effective": capabilities(status), "permitted": capabilities(status, "CapPrm"),
    "packet_fd_open": packet.fileno() >= 0, "second_packet_socket": second,
    "environ_of_pid_1": environ, "namespaces": len(scan.namespaces),
}))
"""


def run(script: str, *prefix: str) -> subprocess.CompletedProcess[str]:
    command = [*prefix, sys.executable, "-c", script]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_after_the_switch_nothing_privileged_is_left_but_the_open_socket() -> None:
    done = run(AFTER_THE_SWITCH)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["ids"] == [[10002] * 3, [10002] * 3, [10002]]
    assert (found["effective"], found["permitted"]) == (0, 0)
    assert found["packet_fd_open"] and found["second_packet_socket"] == "denied"
    assert found["environ_of_pid_1"] == "denied"
    assert found["namespaces"] >= 1


def test_without_setuid_and_setgid_the_switch_fails_loudly() -> None:
    script = "from capture.privileges import drop_to; drop_to(10002, 10002)"
    done = run(script, "setpriv", "--inh-caps=-all", "--bounding-set=-all")
    assert done.returncode != 0
    assert "needs CAP_SETUID and CAP_SETGID" in done.stderr
