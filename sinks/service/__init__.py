"""The sink service: ``callmap sink KIND`` writes the edges topic to one destination.

:mod:`.runner` is the consumer loop (read, add, flush durably, then commit);
:mod:`.destination` is the interface every destination keeps; the others are
destinations (``linefile``, ``sqlite``, ``postgres``, ``syslog``, ``ocsfkafka``)
and the formats they write (``cef``, ``ocsf``, ``sqlschema``).
"""
