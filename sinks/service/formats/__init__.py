"""What the sink destinations write, as pure functions of an edge event.

``cef`` (RFC 5424 syslog carrying CEF), ``ocsf`` (OCSF Network Activity
events) and ``sqlschema`` (the SQL schema, its migrations and rows, shared by
SQLite and PostgreSQL). No I/O here: an import contract keeps it so.
"""
