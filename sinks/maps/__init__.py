"""The map commands: ``callmap list``, ``export`` and ``visualize``.

- :mod:`.cli` is the commands, :mod:`.settings` what each was asked (one typed
  settings object per command);
- :mod:`.readers` takes the current map from ``--from`` (the edges topic or a
  sink's store) and :mod:`.filters` picks edges from it;
- :mod:`.formats` holds every output, pure: the listing, JSON and CSV, DOT,
  Kubernetes documents, ClientIntents, NetworkPolicies and Cilium policies. A
  new export format goes there, with its choice in :mod:`.settings` and
  :mod:`.cli`;
- :mod:`.output` writes to stdout, a file or a directory, and :mod:`.graphviz`
  draws DOT as SVG or PNG.
"""
