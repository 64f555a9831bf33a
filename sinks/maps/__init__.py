"""The map commands: ``callmap list``, ``export`` and ``visualize``.

:mod:`.readers` takes the current map from the edges topic or a sink's store;
:mod:`.filters` picks edges; the rest are output formats, each pure: the
listing, ``tabular`` (JSON, CSV), ``dot`` (Graphviz, drawn by ``render``),
``intents``, ``netpol`` and ``cilium`` (policies built by ``policy`` with
``labels``), and ``documents`` (Kubernetes objects as YAML or JSON).
"""
