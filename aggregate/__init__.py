"""``callmap aggregate``: many clusters' edges merged into one global map (docs/multicluster.md)."""
