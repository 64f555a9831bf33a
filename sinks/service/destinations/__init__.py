"""One module per target a sink writes to, each a :class:`~sinks.service.destination.Sink`.

``linefile`` (rotated JSON Lines files, edges or OCSF), ``sqlite``,
``postgres``, ``syslog`` (CEF over UDP, TCP or TLS) and ``ocsfkafka`` (OCSF
events to a SIEM's topic). Each translates its target's errors into
:class:`~callmap.errors.TemporaryError` or :class:`~callmap.errors.PermanentError`
at its boundary; what it writes comes from :mod:`sinks.service.formats`.
"""
