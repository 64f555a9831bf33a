"""``python -m watch``: the ``callmap watch`` command on its own."""

from watch.cli import watch

watch(prog_name="callmap watch")
