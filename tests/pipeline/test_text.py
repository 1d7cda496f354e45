"""Untrusted text shown to a person: control and bidi characters made visible."""

from __future__ import annotations

from pipeline.text import printable, utf8_text


def test_control_and_bidi_characters_are_escaped_and_plain_text_is_untouched():
    assert printable("cust-42 é ü 日本") == "cust-42 é ü 日本"
    assert printable("a\x1b[31mred\x00\u202egpj.exe") == "a\\x1b[31mred\\x00\\u202egpj.exe"
    assert printable("tab\there\nnewline") == "tab\\there\\nnewline"


def test_bytes_that_are_not_utf8_become_escapes():
    name = b"bad\xff.mp4".decode("utf-8", "surrogateescape")
    assert utf8_text(name) == "bad\\xff.mp4" and printable(name) == "bad\\xff.mp4"
    utf8_text(name).encode("utf-8")  # storable as text
