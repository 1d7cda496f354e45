"""How untrusted text (session ids, file names, errors quoting them) is shown to a person.

An archive's file names are whatever its uploaders sent: bytes that are not UTF-8, NUL,
terminal escapes (ESC), bidirectional overrides (U+202E) that make ``gpj.exe`` read as
``exe.jpg``. Shown raw, they rewrite a terminal or an HTML page. :func:`printable` makes
them visible instead: the text stays the same wherever it is plain.
"""

from __future__ import annotations

import unicodedata


def is_control(char: str) -> bool:
    """Whether ``char`` is a control or format character (Unicode Cc, Cf: NUL, ESC, U+202E...)."""
    return unicodedata.category(char) in ("Cc", "Cf")


def utf8_text(text: str) -> str:
    """``text`` (a file name as Python decodes it) with bytes that are not UTF-8 as ``\\xNN``
    escapes: text every output format can hold."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def printable(text: str) -> str:
    """``text`` with undecodable bytes as ``\\xNN`` and control or format characters (Cc, Cf:
    NUL, ESC, U+202E...) as ``\\xNN`` / ``\\uNNNN`` escapes; anything else unchanged."""
    text = utf8_text(text)
    if text.isprintable():
        return text
    return "".join(c.encode("unicode_escape").decode("ascii") if is_control(c) else c for c in text)
