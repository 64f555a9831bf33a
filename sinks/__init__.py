"""Consumers of the edges topic: the sink service and the map commands.

- :mod:`sinks.service`: ``callmap sink KIND``, the consumer loop
  (:mod:`sinks.service.runner`) and every destination behind the
  :class:`~sinks.service.destination.Sink` interface: JSON lines, SQLite,
  PostgreSQL, syslog/CEF, OCSF. A new sink goes there.
- :mod:`sinks.maps`: ``callmap list``, ``export`` and ``visualize``, the
  readers they take edges from (``--from``), and every output format: the
  listing, JSON/CSV, Graphviz, ClientIntents, NetworkPolicies, Cilium. A new
  export format goes there.
- Here, what both share: the edge changes a consumer receives
  (:mod:`~sinks.changes`), their merge into current state
  (:mod:`~sinks.lifecycle`), how endpoints are named (:mod:`~sinks.endpoints`)
  and escaping for every format (:mod:`~sinks.escape`).

Formats and rules are pure; only the runner, the destinations' writers and
the readers do I/O. See docs/sinks.md.
"""
