"""The Elastic Common Schema's field definitions, as Elastic publishes them, for tests.

Elastic generates the ``@elastic/ecs`` npm package from the ECS repository's
``ecs_flat.yml``: its ``EcsFlat`` object (``generated/ecs_flat.ts``) maps
every field's flat name to its definition (type, ``normalize``,
``allowed_values``, ``expected_values``, description). The
package is fetched once with ``npm pack`` into the cache directory and the
object is dumped to JSON with Node, so tests read ECS's own word on every
field rather than a copy kept here.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from callmap.errors import CallmapError
from callmap.paths import cache_dir
from devtools.process import locked

PACKAGES = {"8.11.0": "8.11.5", "9.4.0": "9.4.0"}
"""ECS release -> the ``@elastic/ecs`` package version that carries its definitions."""


def ecs_fields(ecs_version: str) -> dict[str, dict[str, Any]]:
    """Every field of ECS ``ecs_version`` by flat name (``event.category`` ...)."""
    package = PACKAGES[ecs_version]
    home = cache_dir() / "ecs" / package
    fields = home / "ecs_flat.json"
    home.mkdir(parents=True, exist_ok=True)
    with locked(home / ".lock"):
        if not fields.exists():
            _fetch(package, home, fields)
    loaded: dict[str, dict[str, Any]] = json.loads(fields.read_text())
    return loaded


def _fetch(package: str, home: Path, fields: Path) -> None:
    _run(["npm", "pack", "--silent", f"@elastic/ecs@{package}"], home)
    with tarfile.open(home / f"elastic-ecs-{package}.tgz") as archive:
        member = archive.getmember("package/generated/ecs_flat.ts")
        member.name = "ecs_flat.ts"
        archive.extract(member, home, filter="data")
    out = _run(["node", "-e", _DUMP, str(home / "ecs_flat.ts")], home)
    partial = fields.with_suffix(".part")
    partial.write_text(out)
    partial.replace(fields)


# The package's compiled ecs_flat.js lags its sources (9.4.0 ships 8.x's); its
# ecs_flat.ts is one object literal, plain JavaScript once ``export`` is gone.
_DUMP = """
const fs = require("fs"), vm = require("vm");
const source = fs.readFileSync(process.argv[1], "utf8");
const context = {};
vm.runInNewContext(source.replace("export const EcsFlat =", "EcsFlat ="), context);
process.stdout.write(JSON.stringify(context.EcsFlat));
"""


def _run(command: list[str], cwd: Path) -> str:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        raise CallmapError(f"{' '.join(command[:2])} failed: {detail}") from exc
    return done.stdout
