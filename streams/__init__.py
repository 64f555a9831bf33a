"""The stream app (Faust): joins capture events with identities into edges.

Built by issue #5; it imports only the ``callmap`` core.
"""
