"""``python -m lab ...``: the same as ``callmap lab ...``."""

from lab.cli import lab

lab(prog_name="callmap lab")
