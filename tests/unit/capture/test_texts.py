"""The memo of texts: the decoder's answer, decoded once, in bounded memory."""

from __future__ import annotations

from capture.texts import Texts


def test_the_text_is_the_decoders_and_is_decoded_once() -> None:
    calls: list[bytes] = []

    def decode(raw: bytes) -> str:
        calls.append(raw)
        return raw.decode().upper()

    texts = Texts(decode)
    first, again = texts.text(b"abc"), texts.text(bytes(bytearray(b"abc")))
    assert first == again == "ABC" and first is again
    assert calls == [b"abc"]


def test_a_flood_of_distinct_strings_keeps_at_most_the_limit() -> None:
    texts = Texts(bytes.hex, limit=100)
    for i in range(10_000):
        assert texts.text(i.to_bytes(4, "big")) == f"{i:08x}"
        assert len(texts) <= 100
