"""Which C pieces a process uses: each one that was built, unless turned off."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from capture.dnswire import NATIVE_PARSE
from capture.inetdiag import NATIVE
from capture.native import PURE_PYTHON_ENV


def _in_c(setting: str | None) -> tuple[bool, bool]:
    """(LOOP_IN_C, PARSE_IN_C) of a process started with ``CALLMAP_PURE_PYTHON=setting``."""
    env = {k: v for k, v in os.environ.items() if k != PURE_PYTHON_ENV}
    if setting is not None:
        env[PURE_PYTHON_ENV] = setting
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from capture.native import LOOP_IN_C, PARSE_IN_C; print(LOOP_IN_C, PARSE_IN_C)",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    loop, parse = done.stdout.split()
    return loop == "True", parse == "True"


def test_an_editable_install_built_both_pieces_in_c() -> None:
    assert NATIVE, "capture/_inetdiag.c was not built: `pip install -e .` needs gcc"
    assert NATIVE_PARSE, "capture/_dnsfast.c was not built: `pip install -e .` needs gcc"


@pytest.mark.parametrize(("setting", "expected"), [(None, True), ("0", True), ("1", False)])
def test_both_pieces_in_c_are_used_unless_turned_off(setting: str | None, expected: bool) -> None:
    assert _in_c(setting) == (expected, expected)
