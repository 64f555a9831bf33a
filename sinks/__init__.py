"""Consumers of the edges topic: files, databases, SIEM feeds, and map outputs.

Built by issue #6; it imports only the ``callmap`` core.
"""
