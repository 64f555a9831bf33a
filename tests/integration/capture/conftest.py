"""Fixtures of the capture integration tests (the network lives in dnsnet.py)."""

from helpers.dnsnet import dns_net

__all__ = ["dns_net"]
