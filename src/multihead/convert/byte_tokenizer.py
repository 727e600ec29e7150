"""The byte-level tokenizer of multihead's own models: token id = UTF-8 byte (vocabulary 256).

It has the interface of :class:`multihead.convert.Tokenizer`, so analysis and the viewer treat
byte-level models and pretrained word-piece models alike. Tokens are shown as characters: a
character's first byte shows the character, the other bytes of a multi-byte character show
their hex escape (``é`` is ``["é", "\\xa9"]``); control characters show escapes (``\\n``).
Words (``word_ids``) are those of :func:`multihead.data.english.split_words`.
There are no special tokens; padding uses id 0 (the NUL byte), marked False in
``attention_mask``.

Example:
    >>> tok = ByteTokenizer()
    >>> enc = tok.encode("café\\n")
    >>> enc.ids.tolist(), enc.tokens[0]
    ([[99, 97, 102, 195, 169, 10]], ['c', 'a', 'f', 'é', '\\\\xa9', '\\\\n'])
    >>> tok.decode(enc.ids[0])
    'café\\n'
"""

from __future__ import annotations

from collections.abc import Sequence

from multihead.convert.encoding import (
    Encoded,
    _Row,
    check_bool,
    check_ids,
    check_max_length,
    check_texts,
    pad_rows,
)
from multihead.data.english.words import word_spans

_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _show(char: str) -> str:
    if char.isprintable():
        return char
    return _ESCAPES.get(char, f"\\x{ord(char):02x}" if ord(char) < 256 else f"\\u{ord(char):04x}")


class ByteTokenizer:
    """UTF-8 bytes as tokens, for models with ``vocab_size = 256``."""

    vocab_size = 256
    pad_id = 0
    cls = sep = pad = bos = eos = unk = mask = None
    special_ids: frozenset[int] = frozenset()
    model_max_length: int | None = None

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=256)"

    def _row(self, text: str, max_length: int | None) -> _Row:
        words = [None] * len(text)
        for w, (a, b) in enumerate(word_spans(text)):
            words[a:b] = [w] * (b - a)
        row = _Row([], [], [], [], [])
        for i, char in enumerate(text):
            data = char.encode("utf-8", errors="surrogatepass")
            row.ids += list(data)
            row.tokens += [_show(char)] + [f"\\x{b:02x}" for b in data[1:]]
            row.word_ids += [words[i]] * len(data)
            row.offsets += [(i, i + 1)] * len(data)
        n = len(row.ids) if max_length is None else min(max_length, len(row.ids))
        return _Row(row.ids[:n], row.tokens[:n], row.word_ids[:n], row.offsets[:n], [False] * n)

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        max_length: int | None = None,
        add_special_tokens: bool = True,
    ) -> Encoded:
        """Tokenize ``texts`` (one str or a sequence of B str) into a padded :class:`Encoded`.

        ``max_length`` keeps at most that many bytes of each text (None: all).
        ``add_special_tokens`` is accepted for the common interface; there are none to add.
        """
        texts = check_texts(texts)
        max_length = check_max_length(max_length, 1)
        check_bool("add_special_tokens", add_special_tokens)
        rows = [self._row(t, max_length) for t in texts]
        return pad_rows(texts, rows, self.pad_id, "")

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """The text of a 1-D sequence (or tensor) of byte ids; invalid UTF-8 becomes U+FFFD."""
        check_bool("skip_special_tokens", skip_special_tokens)
        return bytes(check_ids(ids, self.vocab_size)).decode("utf-8", errors="replace")

    def id_to_token(self, token_id: int) -> str:
        """The shown form of one byte: the character for ASCII, else its hex escape."""
        (value,) = check_ids([token_id], self.vocab_size)
        return _show(chr(value)) if value < 128 else f"\\x{value:02x}"

    def token_to_id(self, token: str) -> int | None:
        """The byte of a one-byte (ASCII) token, else None."""
        data = token.encode("utf-8") if isinstance(token, str) else b""
        return data[0] if len(data) == 1 else None
