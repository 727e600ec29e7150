"""What a tokenizer returns for a batch of texts, and the map from its tokens to words.

Both :class:`multihead.convert.Tokenizer` (a checkpoint's tokenizer.json) and
:class:`multihead.convert.ByteTokenizer` (multihead's byte-level models) return an
:class:`Encoded`, so analysis and the viewer treat word pieces and bytes alike.

Example:
    >>> from multihead.convert import ByteTokenizer
    >>> enc = ByteTokenizer().encode(["Hi, you.", "Ok"])
    >>> enc.ids.shape, enc.attention_mask[1].tolist()
    (torch.Size([2, 8]), [True, True, False, False, False, False, False, False])
    >>> enc.tokens[0], enc.word_index(0)
    (['H', 'i', ',', ' ', 'y', 'o', 'u', '.'], [0, 0, 1, None, 2, 2, 2, 3])
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from multihead.data.english.words import split_words

Span = tuple[int, int]


@dataclass(frozen=True)
class Encoded:
    """B texts tokenized and padded on the right to the longest, T tokens.

    Attributes:
        texts: the B input texts.
        ids: ``(B, T)`` int64 token ids; padding holds the tokenizer's ``pad_id``.
        attention_mask: ``(B, T)`` bool, True = a real token (may be attended to), False =
            padding.
        special_mask: ``(B, T)`` bool, True = a special token the tokenizer added
            (``[CLS]``, ``[SEP]``...); never True on padding.
        tokens: per text, T token strings (padding: the pad token, or ``""``).
        word_ids: per text, T entries: the index of the word the token belongs to by the
            tokenizer's own pre-tokenizer (None for special tokens and padding). To map tokens
            to the words of :func:`multihead.data.english.split_words` (the annotation's
            words), use :meth:`word_index`.
        offsets: per text, T ``(start, end)`` character spans into the text (None for
            special tokens and padding).
    """

    texts: tuple[str, ...]
    ids: torch.Tensor
    attention_mask: torch.Tensor
    special_mask: torch.Tensor
    tokens: list[list[str]]
    word_ids: list[list[int | None]]
    offsets: list[list[Span | None]]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def lengths(self) -> torch.Tensor:
        """``(B,)`` int64: the number of real tokens of each text."""
        return self.attention_mask.sum(dim=1)

    def real_tokens(self, index: int) -> list[str]:
        """The tokens of text ``index`` without its padding."""
        return self.tokens[index][: int(self.lengths[index])]

    def word_index(self, index: int, words: Sequence[str] | None = None) -> list[int | None]:
        """For each of the T tokens of text ``index``, the index of its word in ``words``
        (default: ``split_words`` of the text), or None (special tokens, padding, tokens of
        whitespace only). See :func:`align_words`."""
        text = self.texts[index]
        return align_words(text, split_words(text) if words is None else words, self.offsets[index])


def _word_spans_in(text: str, words: Sequence[str]) -> list[Span]:
    spans, pos = [], 0
    for k, word in enumerate(words):
        if not isinstance(word, str) or not word:
            raise ValueError(f"words[{k}] must be a non-empty str, got {word!r}")
        start = text.find(word, pos)
        if start < 0:
            raise ValueError(
                f"words[{k}] {word!r} does not occur in the text after character {pos}; "
                "words must be the text's words in order"
            )
        spans.append((start, start + len(word)))
        pos = start + len(word)
    return spans


def align_words(
    text: str, words: Sequence[str], offsets: Sequence[Span | None]
) -> list[int | None]:
    """Map tokens to words: for each token, the index in ``words`` of the first word it
    overlaps that has a letter or digit (else the first word it overlaps), or None.

    Args:
        text: the text that was tokenized.
        words: the text's words, in order (each found in the text after the previous one),
            e.g. an annotation's words.
        offsets: per token, its ``(start, end)`` character span in ``text`` or None (special
            tokens, padding), as in :attr:`Encoded.offsets`.

    A word split into pieces (``don't`` -> ``don ' t``) has all its pieces mapped to it; a
    token spanning a space and a word (``▁the``) maps to that word. A BPE piece spanning a word
    and its punctuation (``e.`` of ``debate.``) maps to the word, so every word with a letter
    or digit keeps at least one piece, and that punctuation may have none. (BERT's
    pre-tokenizer splits punctuation off, so with it every word has its own pieces.)

    Example:
        >>> align_words("I don't", ["I", "don't"], [None, (0, 1), (2, 5), (5, 6), (6, 7), None])
        [None, 0, 1, 1, 1, None]
    """
    spans = _word_spans_in(text, words)
    starts = [a for a, _ in spans]
    alnum = [any(c.isalnum() for c in w) for w in words]
    out: list[int | None] = []
    for span in offsets:
        if span is None:
            out.append(None)
            continue
        start, end = span
        while start < end and text[start].isspace():
            start += 1
        if start >= end:
            out.append(None)
            continue
        k = max(bisect.bisect_right(starts, start) - 1, 0)
        overlapping = []
        while k < len(spans) and starts[k] < end:
            if spans[k][1] > start:
                overlapping.append(k)
            k += 1
        content = [k for k in overlapping if alnum[k]]
        out.append((content or overlapping or [None])[0])
    return out


@dataclass
class _Row:
    ids: list[int]
    tokens: list[str]
    word_ids: list[int | None]
    offsets: list[Span | None]
    special: list[bool]


def pad_rows(texts: Sequence[str], rows: Sequence[_Row], pad_id: int, pad_token: str) -> Encoded:
    """Pad per-text rows on the right to the longest and stack them into an :class:`Encoded`."""
    t = max((len(r.ids) for r in rows), default=0)
    ids, mask, special = [], [], []
    for r in rows:
        n = t - len(r.ids)
        ids.append(r.ids + [pad_id] * n)
        mask.append([True] * len(r.ids) + [False] * n)
        special.append(r.special + [False] * n)
        r.tokens += [pad_token] * n
        r.word_ids += [None] * n
        r.offsets += [None] * n
    b = len(rows)
    return Encoded(
        texts=tuple(texts),
        ids=torch.tensor(ids, dtype=torch.int64).reshape(b, t),  # (B, T)
        attention_mask=torch.tensor(mask, dtype=torch.bool).reshape(b, t),  # (B, T)
        special_mask=torch.tensor(special, dtype=torch.bool).reshape(b, t),  # (B, T)
        tokens=[r.tokens for r in rows],
        word_ids=[r.word_ids for r in rows],
        offsets=[r.offsets for r in rows],
    )


def check_texts(texts: object) -> list[str]:
    """``texts`` as a list of str: one str is one text; an empty batch is refused."""
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
    if len(texts) == 0:
        raise ValueError("texts is empty; expected at least one text")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
    return list(texts)


def check_max_length(max_length: object, minimum: int) -> int | None:
    """``max_length`` as None or an int >= ``minimum``."""
    if max_length is None:
        return None
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < minimum:
        raise ValueError(
            f"max_length must be None or an int >= {minimum} (room for the special tokens "
            f"and one token), got {max_length!r}"
        )
    return max_length


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def check_ids(ids: object, vocab_size: int) -> list[int]:
    """A 1-D sequence or tensor of token ids in ``[0, vocab_size)`` as a list of int."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise ValueError(
                f"ids must be a 1-D integer tensor (one text), got shape {tuple(ids.shape)} "
                f"dtype {ids.dtype}; decode a batch row by row"
            )
        values = ids.tolist()
    elif isinstance(ids, Sequence) and not isinstance(ids, str):
        values = list(ids)
    else:
        raise TypeError(f"ids must be a sequence of int or a 1-D tensor, got {type(ids).__name__}")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < vocab_size:
            raise ValueError(f"ids[{i}] = {v!r} is not a token id in [0, {vocab_size})")
    return values
