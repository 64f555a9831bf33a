"""Session fixtures of the deploy tests: Helm, and the chart rendered two ways."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.chartrender import EVERYTHING, Rendered, helm_or_skip, render


@pytest.fixture(scope="session")
def helm() -> Path:
    return helm_or_skip()


@pytest.fixture(scope="session")
def default_chart(helm: Path) -> Rendered:
    """The chart with its default values, as `helm template callmap -n callmap` renders it."""
    return render()


@pytest.fixture(scope="session")
def everything_chart(helm: Path) -> Rendered:
    """The chart with every option changed (values-everything.yaml), release "prod"."""
    return render(namespace="observability", release="prod", values=[EVERYTHING])


@pytest.fixture(scope="session", params=["default_chart", "everything_chart"])
def chart(request: pytest.FixtureRequest) -> Rendered:
    """Each rendering in turn."""
    rendered: Rendered = request.getfixturevalue(request.param)
    return rendered
