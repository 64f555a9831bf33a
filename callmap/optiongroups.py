"""Click options that several commands share, handed to each as one typed object.

A command group's shared options (capture's live options, a sink's consumer
options, a map command's source and filters) are declared once with the
function that builds their settings object from them. :func:`option_group`
makes the decorator: it adds the options, takes their values out of what
click passes, builds the object (the ``build`` function has one typed keyword
parameter per option, so a misspelt option is a type error there) and calls
the command with it first, the command's own options following by name.
:func:`metrics_port_option` is the one option every service takes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from callmap.backoff import DEFAULT_START_TIMEOUT

T = TypeVar("T")
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def option_group(
    options: Sequence[Decorator], build: Callable[..., T]
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A decorator adding ``options`` to a command and handing it ``build(**their values)``."""
    names = _parameter_names(options)

    def decorate(function: Callable[..., None]) -> Callable[..., None]:
        def command(**values: Any) -> None:
            shared = {name: values.pop(name) for name in names}
            function(build(**shared), **values)

        functools.update_wrapper(command, function)
        decorated: Callable[..., Any] = command
        for option in reversed(options):
            decorated = option(decorated)
        return decorated

    return decorate


def metrics_port_option(default: int) -> Decorator:
    """``--metrics-port``, which every service takes: its Prometheus port, 0 for none."""
    return click.option(
        "--metrics-port",
        default=default,
        show_default=True,
        envvar="CALLMAP_METRICS_PORT",
        help="Prometheus port; 0 turns it off.",
    )


def start_timeout_option() -> Decorator:
    """``--start-timeout``, which every service that needs Kafka to start takes."""
    return click.option(
        "--start-timeout",
        default=DEFAULT_START_TIMEOUT,
        show_default=True,
        help="Seconds to keep trying to reach Kafka at start; then exit non-zero.",
    )


def _parameter_names(options: Sequence[Decorator]) -> list[str]:
    """The names click gives the values of ``options``, found by applying them once."""

    def probe() -> None:
        """Carries the options' parameters; never called."""

    for option in options:
        option(probe)
    params: list[click.Parameter] = getattr(probe, "__click_params__", [])
    return [param.name for param in params if param.name is not None]
