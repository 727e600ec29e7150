"""Readable token labels: visible glyphs for spaces, newlines and control characters, and
byte-level inputs shown as the characters they spell.

Every label comes with a tooltip that names the token exactly (its ``repr`` or its byte
value), so a glyph never hides what the model saw.

Example:
    >>> readable_tokens(["Hello", " world", "\\n"]).labels
    ['Hello', '␣world', '↵']
    >>> readable_tokens("é!\\x00".encode()).labels  # bytes: one token per byte
    ['é', '·', '!', '\\\\x00']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Whitespace and invisible characters get a visible stand-in. Only glyphs that common fonts
# (DejaVu, Liberation, the macOS and Windows UI fonts) carry: Unicode's "Control Pictures"
# (U+2400..) beyond the open box are missing from most, so other controls are escapes.
_GLYPHS = {
    " ": "␣",
    "\n": "↵",
    "\t": "⇥",
    "\r": "\\r",
    "\u00a0": "⍽",  # no-break space
}
_INVISIBLE = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"}
CONTINUATION = "·"  # shown on the 2nd..nth byte of a multi-byte UTF-8 character


@dataclass(frozen=True)
class TokenLabels:
    """Display labels and exact tooltips, one of each per token."""

    labels: list[str]
    titles: list[str]


def readable_text(text: str) -> str:
    """``text`` with whitespace, control and invisible characters made visible.

    >>> readable_text("a b\\tc\\x01")
    'a␣b⇥c\\\\x01'
    """
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _GLYPHS:
            out.append(_GLYPHS[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0x80 <= code < 0xA0 or ch in _INVISIBLE:
            out.append(f"⟨U+{code:04X}⟩")
        else:
            out.append(ch)
    return "".join(out) if out else "∅"


def _utf8_length(lead: int) -> int:
    """Length of the UTF-8 sequence a lead byte starts, 0 if it cannot start one."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


def byte_labels(data: bytes) -> TokenLabels:
    """Labels for a byte-level input, one token per byte.

    A multi-byte UTF-8 character is shown on its first byte and :data:`CONTINUATION` on the
    others; bytes that are not valid UTF-8 are shown as ``\\xNN``.

    >>> byte_labels(b"a\\xe2\\x82\\xac\\xff").labels
    ['a', '€', '·', '·', '\\\\xff']
    """
    labels: list[str] = []
    titles: list[str] = []
    i = 0
    while i < len(data):
        n = _utf8_length(data[i])
        char = None
        if n:
            try:
                char = data[i : i + n].decode("utf-8")
            except UnicodeDecodeError:
                char = None
        if char is None:
            labels.append(f"\\x{data[i]:02x}")
            titles.append(f"byte 0x{data[i]:02x} (not valid UTF-8 here)")
            i += 1
            continue
        labels.append(readable_text(char))
        titles.append(f"byte 0x{data[i]:02x} {char!r}")
        for j in range(1, n):
            labels.append(CONTINUATION)
            titles.append(f"byte 0x{data[i + j]:02x} (continues {char!r})")
        i += n
    return TokenLabels(labels, titles)


def readable_tokens(tokens: Sequence[str] | bytes | bytearray) -> TokenLabels:
    """Display labels and tooltips for ``tokens``: a list of strings (word pieces, BPE
    tokens, characters) or ``bytes`` for a byte-level model (one token per byte; pass
    ``bytes(ids)`` for byte ids).

    Word-piece markers (``##``, ``▁``, ``Ġ``) are kept as the tokenizer wrote them.
    """
    if isinstance(tokens, (bytes, bytearray)):
        return byte_labels(bytes(tokens))
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise TypeError(
            f"tokens must be a list of strings or bytes (byte-level), got {type(tokens).__name__}"
        )
    labels, titles = [], []
    for i, tok in enumerate(tokens):
        if not isinstance(tok, str):
            raise TypeError(f"tokens[{i}] must be a str, got {type(tok).__name__} ({tok!r})")
        labels.append(readable_text(tok))
        titles.append(repr(tok))
    return TokenLabels(labels, titles)
