"""The capture commands refuse option combinations that cannot work."""

from __future__ import annotations

from click.testing import CliRunner

from capture.cli import capture


def test_tcp_info_is_refused_with_drop_to() -> None:
    result = CliRunner().invoke(capture, ["run", "--tcp-info", "--drop-to", "10002"])
    assert result.exit_code == 2
    assert "--drop-to cannot be combined with --tcp-info" in result.output
