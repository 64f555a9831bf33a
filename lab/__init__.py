"""The lab: a real multi-pod Kubernetes-like network on one machine.

A topology file (see ``docs/lab.md``) becomes network namespaces with routed
/32 veths, nftables DNAT for service IPs, a real DNS server and processes that
really call each other; the lab also knows the true edge set. Only the pure
modules (:mod:`lab.topology`, :mod:`lab.addressing`, :mod:`lab.dnszone`,
:mod:`lab.truth`, :mod:`lab.inventory`) are safe to import anywhere; nothing
here does I/O at import time.
"""
