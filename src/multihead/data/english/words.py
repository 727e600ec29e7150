"""The word tokenisation of the English sentences and their annotations.

The rule, chosen so that a linguist's word is one word and punctuation is never part of one:

1. split the text on whitespace;
2. from each chunk, peel off leading and trailing punctuation and symbol characters (Unicode
   categories ``P*`` and ``S*``: ``. , ; : ! ? " ' ( ) $ %`` and curly quotes...), each one a
   word of its own;
3. what is left of the chunk is one word, inner punctuation included: ``don't``, ``company's``,
   ``9:30``, ``3.5``, ``300,000`` and ``well-known`` are single words.

So ``"Hi," she said.`` has the words ``" Hi , " she said .``. Possessive ``'s`` and contractions
stay attached (unlike Universal Dependencies, which splits them); the annotations avoid
contracted subjects (``I'm``) for that reason. A word-piece tokenizer splits more finely
(``don ' t``); :func:`multihead.convert.align_words` maps its pieces back to these words.

Example:
    >>> split_words('"We cannot promise that," the minister said.')
    ['"', 'We', 'cannot', 'promise', 'that', ',', '"', 'the', 'minister', 'said', '.']
    >>> split_words("The café's 300,000th visitor (aged 9) didn't pay $40!")[1:]
    ["café's", '300,000th', 'visitor', '(', 'aged', '9', ')', "didn't", 'pay', '$', '40', '!']
    >>> word_spans("Hi, you.")
    [(0, 2), (2, 3), (4, 7), (7, 8)]
"""

from __future__ import annotations

import unicodedata


def _is_mark(char: str) -> bool:
    """True for a punctuation or symbol character, which never starts or ends a word."""
    return unicodedata.category(char)[0] in "PS"


def word_spans(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` character spans of ``text``'s words under the rule above."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    spans: list[tuple[int, int]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        end = i
        while end < n and not text[end].isspace():
            end += 1
        start, stop = i, end
        trailing: list[tuple[int, int]] = []
        while start < stop and _is_mark(text[start]):
            spans.append((start, start + 1))
            start += 1
        while stop > start and _is_mark(text[stop - 1]):
            trailing.append((stop - 1, stop))
            stop -= 1
        if start < stop:
            spans.append((start, stop))
        spans.extend(reversed(trailing))
        i = end
    return spans


def split_words(text: str) -> list[str]:
    """The words of ``text`` under the rule above, in order."""
    return [text[a:b] for a, b in word_spans(text)]
