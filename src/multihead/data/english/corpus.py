"""English sentences written for multihead, and hand-annotated dependency relations on a subset.

``sentences.txt`` holds one sentence per line (its line number, from 0, is the sentence id):
varied topics, lengths of 4 to about 40 words, questions, passives, relative clauses, lists,
numbers, quotes and names. A fixed split keeps a held-out set the scoring never sees: every
5th sentence (``id % 5 == 4``) is ``"heldout"``, the others are ``"score"``.

``annotations.jsonl`` annotates 192 of them (one JSON object a line,
``{"id": 17, "words": [...], "relations": [{"rel": "det", "dep": 0, "head": 1}, ...]}``,
word indices into ``words``, the sentence split by :func:`split_words`) with four relations in
the style of Universal Dependencies v2 (basic trees), plus passive subjects kept apart:

- ``det``: a determiner to its noun, from a closed list (articles, demonstratives, ``every``,
  ``each``, ``some``, ``any``, ``no``, ``all``, ``both``, ``which``, ``what``...). Possessives
  (``my``, ``his``) are ``nmod:poss`` in UD and are not annotated; nor are numbers (``nummod``).
- ``amod``: an adjective (participles and ordinals included: ``broken``, ``last``) to the noun it
  modifies. Noun compounds (``kitchen wall``) and predicative adjectives are not ``amod``.
- ``nsubj``: the subject of a verb (the lexical verb, never an auxiliary or modal: in
  ``has eaten`` the head is ``eaten``), relative pronouns included (``who`` in ``a man who had
  stolen``). In a coordination only the first conjunct is the dependent, as in UD basic trees.
  Copular clauses (forms of *be* with a predicate) are NOT annotated: UD makes the predicate
  the head, so their subject's head would not be a verb.
- ``obj``: the direct object of a verb, fronted ones included (``What did she buy?``);
  indirect objects, clausal complements and objects of prepositions are not ``obj``.
- ``nsubj:pass``: the subject of a passive verb (head the participle); counted apart and not
  one of :data:`RELATIONS`.

A multi-word name is headed by its first word (UD ``flat``). Every annotated sentence has all
instances of these relations it contains, and each word has at most one head.

Example:
    >>> from multihead.data import english
    >>> len(english.sentences()), len(english.sentences("score")), len(english.sentences("heldout"))
    (386, 309, 77)
    >>> first = english.annotations()[0]
    >>> first.text
    'The old man fed the pigeons in the park.'
    >>> print(first.describe())
    det(The-0 -> man-2) amod(old-1 -> man-2) nsubj(man-2 -> fed-3) det(the-4 -> pigeons-5) \
obj(pigeons-5 -> fed-3) det(the-7 -> park-8)
    >>> english.relation_counts("score")["det"] >= 50
    True
    >>> english.offset_baseline("score")     # the most common head - dep per relation
    {'det': 1, 'amod': 1, 'nsubj': 1, 'obj': -2, 'nsubj:pass': 2}
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

from multihead.data.english.words import split_words

SPLITS = ("all", "score", "heldout")
HELDOUT_EVERY = 5
RELATIONS = ("det", "amod", "nsubj", "obj")
ALL_RELATIONS = (*RELATIONS, "nsubj:pass")

_PACKAGE = "multihead.data.english"


def _check_split(split: object) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return str(split)


def split_of(sentence_id: int) -> str:
    """``"heldout"`` for every 5th sentence id (``id % 5 == 4``), else ``"score"``."""
    if isinstance(sentence_id, bool) or not isinstance(sentence_id, int) or sentence_id < 0:
        raise ValueError(f"sentence_id must be an int >= 0, got {sentence_id!r}")
    return "heldout" if sentence_id % HELDOUT_EVERY == HELDOUT_EVERY - 1 else "score"


def _in_split(sentence_id: int, split: str) -> bool:
    return split == "all" or split_of(sentence_id) == split


@dataclass(frozen=True)
class Relation:
    """One dependency: word ``dep`` depends on word ``head`` with label ``rel``."""

    rel: str
    dep: int
    head: int

    @property
    def offset(self) -> int:
        """``head - dep``: where the head is, counted from the dependent."""
        return self.head - self.dep


@dataclass(frozen=True)
class Annotation:
    """An annotated sentence: its id (line in ``sentences.txt``), text, words and relations."""

    id: int
    text: str
    words: tuple[str, ...]
    relations: tuple[Relation, ...]

    @property
    def split(self) -> str:
        return split_of(self.id)

    def describe(self) -> str:
        """The relations as ``rel(dep-i -> head-j)``, for reading the annotation."""
        w = self.words
        return " ".join(
            f"{r.rel}({w[r.dep]}-{r.dep} -> {w[r.head]}-{r.head})" for r in self.relations
        )


@cache
def _sentences() -> tuple[str, ...]:
    text = resources.files(_PACKAGE).joinpath("sentences.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.split("\n") if line)


def _parse_annotation(lineno: int, line: str, texts: tuple[str, ...]) -> Annotation:
    where = f"annotations.jsonl line {lineno}"
    try:
        obj = json.loads(line)
        sid, words = obj["id"], tuple(obj["words"])
        relations = tuple(Relation(r["rel"], r["dep"], r["head"]) for r in obj["relations"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{where} is not an annotation record: {err}") from err
    if not isinstance(sid, int) or not 0 <= sid < len(texts):
        raise ValueError(f"{where}: id {sid!r} is not a sentence id (0..{len(texts) - 1})")
    if list(words) != split_words(texts[sid]):
        raise ValueError(f"{where}: words do not match sentence {sid} split by split_words")
    for r in relations:
        if r.rel not in ALL_RELATIONS or not (0 <= r.dep < len(words) and 0 <= r.head < len(words)):
            raise ValueError(f"{where}: bad relation {r} for {len(words)} words")
    return Annotation(sid, texts[sid], words, relations)


@cache
def _annotations() -> tuple[Annotation, ...]:
    text = resources.files(_PACKAGE).joinpath("annotations.jsonl").read_text(encoding="utf-8")
    texts = _sentences()
    lines = enumerate(text.split("\n"), start=1)
    return tuple(_parse_annotation(n, line, texts) for n, line in lines if line.strip())


def sentences(split: str = "all") -> list[str]:
    """The sentences of ``split`` (``"all"``, ``"score"`` or ``"heldout"``), in id order."""
    split = _check_split(split)
    return [s for i, s in enumerate(_sentences()) if _in_split(i, split)]


def sentence_ids(split: str = "all") -> list[int]:
    """The ids (line numbers in ``sentences.txt``) of the sentences of ``split``."""
    split = _check_split(split)
    return [i for i in range(len(_sentences())) if _in_split(i, split)]


def annotations(split: str = "all") -> list[Annotation]:
    """The annotated sentences of ``split``, in id order."""
    split = _check_split(split)
    return [a for a in _annotations() if _in_split(a.id, split)]


def relation_counts(split: str = "all") -> dict[str, int]:
    """How many instances of each relation of :data:`ALL_RELATIONS` the split has."""
    counts = Counter(r.rel for a in annotations(split) for r in a.relations)
    return {rel: counts[rel] for rel in ALL_RELATIONS}


def offset_baseline(split: str = "score") -> dict[str, int]:
    """Per relation, the most common offset ``head - dep`` on ``split``.

    This is the fixed-offset baseline of Clark et al. 2019 ("What Does BERT Look At?", sec. 4.2):
    predict that the head of every dependent lies at one fixed offset from it. Fit it on the
    ``"score"`` split and evaluate with :func:`offset_accuracy` on ``"heldout"`` to compare
    with heads chosen on ``"score"``. Ties go to the smaller ``|offset|``, then the negative one.
    """
    per_rel: dict[str, Counter[int]] = {rel: Counter() for rel in ALL_RELATIONS}
    for a in annotations(split):
        for r in a.relations:
            per_rel[r.rel][r.offset] += 1
    return {
        rel: min(c, key=lambda off, c=c: (-c[off], abs(off), off))
        for rel, c in per_rel.items()
        if c
    }


def offset_accuracy(offsets: Mapping[str, int], split: str = "heldout") -> dict[str, float]:
    """Per relation in ``offsets``, the share of its instances on ``split`` whose head is at
    that offset from the dependent (the accuracy of the fixed-offset baseline).

    Example:
        >>> acc = offset_accuracy(offset_baseline("score"), "heldout")
        >>> 0.5 < acc["amod"] <= 1.0
        True
    """
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for a in annotations(split):
        for r in a.relations:
            if r.rel in offsets:
                totals[r.rel] += 1
                hits[r.rel] += r.offset == offsets[r.rel]
    return {rel: hits[rel] / totals[rel] for rel in offsets if totals[rel]}
