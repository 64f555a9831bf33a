"""Consumers of the edges topic: the sink service and the map commands.

- :mod:`sinks.service`: ``callmap sink KIND``, the consumer loop
  (:mod:`sinks.service.runner`) and every destination behind the
  :class:`~sinks.service.destination.Sink` interface: JSON lines, SQLite,
  PostgreSQL, syslog/CEF, OCSF. A new sink goes into
  :mod:`sinks.service.destinations`.
- :mod:`sinks.maps`: ``callmap list``, ``export`` and ``visualize``, the
  readers they take edges from (``--from``), and every output format: the
  listing, JSON/CSV, Graphviz, ClientIntents, NetworkPolicies, Cilium. A new
  export format goes into :mod:`sinks.maps.formats`.
- Here, what both share: the edge changes a consumer receives
  (:mod:`~sinks.changes`), their merge into current state
  (:mod:`~sinks.lifecycle`), how endpoints are named and which cluster each
  lives in (:mod:`~sinks.endpoints`)
  and escaping for every format (:mod:`~sinks.escape`).

The service never imports the map commands; the map commands import the
service only to read back what a database destination stored. Formats and
rules are pure (``formats`` packages and the shared modules, held so by an
import contract); only the runner, the destinations, the readers and the
commands do I/O. See docs/sinks.md.
"""
