"""The node agent: DNS answers from packets and connections from socket tables, to Kafka.

Pure parsers (``frames``, ``tcpstream``, ``dnswire``, ``procnet``, ``procparse``)
and rules (``dnsfold``, ``sockroles``, ``connreport``) sit under thin I/O
(``sniffer``, ``procscan``, ``publisher``); see docs/capture.md.
"""
