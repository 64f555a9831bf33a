"""Texts of the byte strings a node sees again and again, decoded once each.

A node's DNS answers carry the same few client and server addresses, and the
same names, over and over; decoding each afresh makes a new string for every
frame, and the folder's memory of recent sightings keeps them all (a third of
it at 75,000 answers/s, ``bench_capture_live``). :class:`Texts` hands out one
string per distinct byte string instead. It is a memo, invisible in results:
the text is what ``decode`` gives. A flood of distinct byte strings costs a
bounded memory: past ``limit`` entries the memo forgets everything and starts
again.
"""

from __future__ import annotations

from collections.abc import Callable


class Texts:
    """``decode(raw)``, remembered for the ``limit`` byte strings seen last."""

    __slots__ = ("_decode", "_limit", "_texts")

    def __init__(self, decode: Callable[[bytes], str], limit: int = 65_536) -> None:
        self._decode = decode
        self._limit = limit
        self._texts: dict[bytes, str] = {}

    def text(self, raw: bytes) -> str:
        texts = self._texts
        found = texts.get(raw)
        if found is None:
            if len(texts) >= self._limit:
                texts.clear()
            found = texts[raw] = self._decode(raw)
        return found

    def shared(self) -> tuple[dict[bytes, str], int]:
        """The memo and its limit, for a reader in C that fills it by the same rule
        (``capture/_dnsfast.c``): one string per byte string for both."""
        return self._texts, self._limit

    def __len__(self) -> int:
        return len(self._texts)
