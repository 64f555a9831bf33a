"""Every output of the map commands, as pure functions of edges (and identities).

``listing`` (``callmap list``), ``tabular`` (JSON, CSV), ``dot`` (Graphviz),
``documents`` (Kubernetes objects as YAML or JSON), and the policies:
``intents`` (Otterize ClientIntents), ``netpol`` (NetworkPolicies), ``cilium``
(CiliumNetworkPolicies), built on ``policy`` (grouping, ports, metadata) and
``labels`` (pod selectors). No I/O here: an import contract keeps it so.
"""
