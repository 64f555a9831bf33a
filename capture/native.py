"""Which of callmap's two modules in C this process uses: each one that was built,
unless ``CALLMAP_PURE_PYTHON=1`` turns both off (to compare them with the Python
they stand in for, or to rule them out). The Python is the reference in both:
``capture/_inetdiag.c`` reads sock_diag dumps, ``capture/_dnsfast.c`` the usual
DNS frame and response (and, from a receive ring, folds it)."""

from __future__ import annotations

import os
from typing import Final

from capture.dnswire import NATIVE_PARSE
from capture.inetdiag import NATIVE

PURE_PYTHON_ENV: Final = "CALLMAP_PURE_PYTHON"
_PURE_PYTHON = os.environ.get(PURE_PYTHON_ENV) == "1"
LOOP_IN_C: Final = NATIVE and not _PURE_PYTHON
"""Whether sock_diag dumps are read by the loop in C (``capture/_inetdiag.c``)."""
PARSE_IN_C: Final = NATIVE_PARSE and not _PURE_PYTHON
"""Whether the usual DNS frame and response are read in C (``capture/_dnsfast.c``):
what the capture agent and ``capture dns --pcap`` tell their ``DnsFolder``."""
