"""What ``--drop-to`` accepts, and how the capabilities left are read."""

from __future__ import annotations

import pytest

from callmap.errors import ConfigError
from capture.privileges import capabilities, parse_user

STATUS = """Name:\tpython
Uid:\t0\t0\t0\t0
CapInh:\t0000000000000000
CapPrm:\t00000000000020c0
CapEff:\t0000000000002000
CapBnd:\t000001ffffffffff
"""


@pytest.mark.parametrize(
    ("text", "ids"), [("10002:10002", (10002, 10002)), ("10002", (10002, 10002)), ("7:9", (7, 9))]
)
def test_a_user_and_group_in_numbers(text: str, ids: tuple[int, int]) -> None:
    assert parse_user(text) == ids


@pytest.mark.parametrize(
    "text", ["0", "0:10002", "10002:0", "callmap", "1:x", "", "-5", "4294967295"]
)
def test_root_names_and_nonsense_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--drop-to"):
        parse_user(text)


def test_capability_sets_come_from_the_status_file() -> None:
    assert capabilities(STATUS) == 0x2000  # CAP_NET_RAW
    assert capabilities(STATUS, "CapPrm") == 0x20C0  # and CAP_SETGID, CAP_SETUID
