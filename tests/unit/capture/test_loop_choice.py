"""Which loop reads sock_diag dumps: the one in C where it was built, unless turned off."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from capture.inetdiag import NATIVE
from capture.sockdiag import PURE_PYTHON_ENV


def _loop_in_c(setting: str | None) -> bool:
    env = {k: v for k, v in os.environ.items() if k != PURE_PYTHON_ENV}
    if setting is not None:
        env[PURE_PYTHON_ENV] = setting
    done = subprocess.run(
        [sys.executable, "-c", "from capture.sockdiag import LOOP_IN_C; print(LOOP_IN_C)"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return done.stdout.strip() == "True"


def test_an_editable_install_built_the_loop_in_c() -> None:
    assert NATIVE, "capture/_inetdiag.c was not built: `pip install -e .` needs gcc"


@pytest.mark.parametrize(("setting", "expected"), [(None, True), ("0", True), ("1", False)])
def test_the_loop_in_c_reads_dumps_unless_turned_off(setting: str | None, expected: bool) -> None:
    assert _loop_in_c(setting) is expected
