"""A service stops on SIGTERM or SIGINT with its clean-up run, in a real process."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.kernel

SERVICE = """
import asyncio, sys
from callmap.signals import run_until_signalled

async def main():
    print("running", flush=True)
    try:
        await asyncio.sleep(60)
        return "ended"
    finally:
        print("cleaned up", flush=True)

print("result", run_until_signalled(main()), flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_cancels_the_service_and_its_clean_up_runs(signum: int) -> None:
    service = subprocess.Popen(
        [sys.executable, "-c", SERVICE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert service.stdout is not None
        assert service.stdout.readline() == "running\n"  # the handlers are in place by now
        service.send_signal(signum)
        out, err = service.communicate(timeout=10)
    finally:
        if service.poll() is None:
            service.kill()
    assert (service.returncode, out) == (0, "cleaned up\nresult None\n"), err
