"""callmap: who calls whom inside Kubernetes clusters, as a stream of edges over Kafka.

This package is the shared core: the wire contract (:mod:`callmap.wire`),
settings, the Kafka adapter and the ``callmap`` command. The services
(``capture``, ``streams``, ``sinks``) import it and never each other.
"""

__version__ = "0.1.0"
