"""Consumers of the edges topic: files, databases, SIEM feeds, and map outputs.

Built by issue #6; it imports only the ``callmap`` core. A pure core of
formats and rules (``changes``, ``lifecycle``, ``escape``, ``endpoints``,
``filters``, ``labels``, ``listing``, ``intents``, ``netpol``, ``cilium``,
``tabular``, ``dot``, ``cef``, ``ocsf``, ``schema``) sits under thin adapters
(``runner`` for Kafka, ``linefile``, ``sqlite``, ``postgres``, ``syslog``,
``ocsfkafka``, ``sources``, ``render``) and the commands (``sinkcli`` for
``callmap sink``, ``cli`` for ``list``, ``export`` and ``visualize``). See
docs/sinks.md.
"""
