"""The sink service: ``callmap sink KIND`` writes the edges topic to one destination.

- :mod:`.cli` is the command, :mod:`.settings` what it was asked (one typed
  settings object per kind);
- :mod:`.runner` is the consumer loop every kind shares (read, add, flush
  durably, then commit), with :mod:`.journal` (offsets an append-only target
  has written) and :mod:`.stats` (what a sink did, for logs and Prometheus);
- :mod:`.destination` is the interface every destination keeps;
- :mod:`.destinations` holds one module per target (files, SQLite,
  PostgreSQL, syslog, a Kafka topic): a new sink goes there, with its kind in
  :mod:`.settings` and :mod:`.cli`;
- :mod:`.formats` holds what the destinations write, pure: CEF in syslog,
  OCSF events, the SQL schema and its rows.
"""
