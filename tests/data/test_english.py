"""The English sentences and their dependency annotations: the data is found as package data,
the split is fixed, and every annotated relation passes plausibility checks on its words."""

from __future__ import annotations

import fnmatch
import itertools
import re
import sys
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from multihead.data import english
from multihead.data.english.corpus import _parse_annotation

ROOT = Path(__file__).resolve().parents[2]

# Closed list of the words the guidelines allow as ``det`` dependents.
DETERMINERS = {
    "a", "an", "the", "this", "that", "these", "those", "every", "each", "some", "any", "no",
    "all", "both", "either", "neither", "another", "which", "what", "whatever",
}  # fmt: skip
PRONOUNS = {
    "i", "you", "he", "she", "it", "we", "they", "me", "him", "her", "us", "them", "who",
    "whom", "what", "which", "that", "everyone", "everything", "nobody", "someone", "anyone",
    "something", "nothing", "themselves", "herself", "himself", "myself",
}  # fmt: skip
# Never the verb head of nsubj/obj: modals and forms of *be* (auxiliaries are not heads, and
# copular clauses are not annotated).
NOT_VERB_HEADS = {
    "will", "would", "can", "could", "shall", "should", "may", "might", "must", "cannot",
    "be", "is", "am", "are", "was", "were", "been", "being",
}  # fmt: skip
ARTICLES_ETC = {"a", "an", "the", "every", "each", "no", "these", "those"}
PASSIVE_AUX = {"be", "is", "am", "are", "was", "were", "been", "being", "get", "got"}


def is_punct(word: str) -> bool:
    return not any(c.isalnum() for c in word)


def content_words(text: str) -> int:
    return sum(not is_punct(w) for w in english.split_words(text))


ANNOTATIONS = english.annotations()


# --- sentences and the split -------------------------------------------------------------


def test_data_files_are_package_resources():
    folder = resources.files("multihead.data.english")
    assert folder.joinpath("sentences.txt").is_file()
    assert folder.joinpath("annotations.jsonl").is_file()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is new in Python 3.11")
def test_pyproject_ships_every_data_file_in_the_wheel():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["multihead.data.english"]
    folder = ROOT / "src" / "multihead" / "data" / "english"
    data = [p.name for p in folder.iterdir() if p.is_file() and p.suffix != ".py"]
    assert data, folder
    for name in data:
        assert any(fnmatch.fnmatch(name, pat) for pat in patterns), name


def test_sentence_count_split_and_uniqueness():
    all_ = english.sentences()
    assert 300 <= len(all_) <= 400
    assert len(set(all_)) == len(all_), "duplicate sentences"
    score, held = english.sentence_ids("score"), english.sentence_ids("heldout")
    assert sorted(score + held) == list(range(len(all_)))
    assert held == list(range(4, len(all_), 5))
    assert english.sentences("heldout") == [all_[i] for i in held]
    assert all(english.split_of(i) == "heldout" for i in held)


def test_sentences_are_varied():
    all_ = english.sentences()
    lengths = [content_words(s) for s in all_]
    assert min(lengths) >= 4 and max(lengths) >= 35, (min(lengths), max(lengths))
    assert sum(n >= 20 for n in lengths) >= 20, "too few long sentences"
    assert all(s == s.strip() and "\t" not in s for s in all_)
    assert sum(s.endswith("?") for s in all_) >= 25, "questions"
    assert sum('"' in s for s in all_) >= 8, "quotes"
    assert sum(bool(re.search(r"\d", s)) for s in all_) >= 25, "numbers"
    passive = re.compile(r"\b(was|were|is|are|been|be) (\w+ )?\w+(ed|en)\b")
    assert sum(bool(passive.search(s)) for s in all_) >= 20, "passives"
    assert sum(bool(re.search(r"\b(who|which|whose)\b", s)) for s in all_) >= 20, "relatives"


def test_bad_split_is_refused():
    with pytest.raises(ValueError, match="split must be one of"):
        english.sentences("train")
    with pytest.raises(ValueError, match="sentence_id"):
        english.split_of(-1)


# --- the word rule ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Hi, you.", ["Hi", ",", "you", "."]),
        ('"Stop!" he said.', ['"', "Stop", "!", '"', "he", "said", "."]),
        ("It costs $4.50 (or 40%).", ["It", "costs", "$", "4.50", "(", "or", "40", "%", ")", "."]),
        ("don't  the company's 9:30", ["don't", "the", "company's", "9:30"]),
        ("...", [".", ".", "."]),
        ("", []),
    ],
)
def test_split_words(text, words):
    assert english.split_words(text) == words


def test_words_join_back_to_every_sentence():
    for text in english.sentences():
        spans = english.word_spans(text)
        assert all(a < b for a, b in spans)
        assert all(b <= c for (_, b), (c, _) in itertools.pairwise(spans))
        gaps = [text[b:c] for (_, b), (c, _) in itertools.pairwise(spans)]
        assert all(g == "" or g.isspace() for g in gaps), text
        assert "".join(english.split_words(text)) == "".join(text.split())


# --- the annotations ----------------------------------------------------------------------


def test_annotations_match_their_sentences():
    texts = english.sentences()
    assert 120 <= len(ANNOTATIONS) <= 200
    assert [a.id for a in ANNOTATIONS] == sorted({a.id for a in ANNOTATIONS})
    for a in ANNOTATIONS:
        assert a.text == texts[a.id]
        assert list(a.words) == english.split_words(a.text)
        assert "".join(a.words) == "".join(a.text.split())


def test_relation_indices_and_one_head_per_word():
    for a in ANNOTATIONS:
        deps = [r.dep for r in a.relations]
        assert len(deps) == len(set(deps)), a.describe()
        for r in a.relations:
            assert r.rel in english.ALL_RELATIONS
            assert 0 <= r.dep < len(a.words) and 0 <= r.head < len(a.words), (a.id, r)
            assert r.dep != r.head, (a.id, r)


def test_relations_have_plausible_parts_of_speech():
    for a in ANNOTATIONS:
        for r in a.relations:
            dep, head = a.words[r.dep].lower(), a.words[r.head].lower()
            where = f"{a.id}: {r.rel}({dep} -> {head}) in {a.text!r}"
            assert not is_punct(dep) and not is_punct(head), where
            assert head not in DETERMINERS - PRONOUNS and head not in PRONOUNS, where
            if r.rel == "det":
                assert dep in DETERMINERS and 1 <= r.offset <= 3, where
            elif r.rel == "amod":
                assert dep not in DETERMINERS | PRONOUNS and not dep[0].isdigit(), where
                assert 1 <= r.offset <= 2, where  # adjectives precede their noun here
            else:
                assert dep not in ARTICLES_ETC, where
                assert head not in NOT_VERB_HEADS, where
            if r.rel == "nsubj:pass":
                assert PASSIVE_AUX & {w.lower() for w in a.words[r.dep : r.head]}, where


def test_nominal_heads_are_not_verb_heads():
    # Nouns (det/amod heads) and verbs (nsubj/obj heads) are disjoint in every sentence: a noun
    # heading a subject would be a copular predicate, which the guidelines exclude.
    for a in ANNOTATIONS:
        nominal = {r.head for r in a.relations if r.rel in ("det", "amod")}
        verbal = {r.head for r in a.relations if r.rel not in ("det", "amod")}
        leaves = {r.dep for r in a.relations if r.rel in ("det", "amod")}
        assert not nominal & verbal, a.describe()
        assert not leaves & (nominal | verbal), a.describe()


def test_enough_instances_per_relation_in_both_splits():
    total, score, held = (english.relation_counts(s) for s in ("all", "score", "heldout"))
    for rel in english.RELATIONS:
        assert total[rel] >= 70, (rel, total[rel])
        assert score[rel] >= 50, (rel, score[rel])
        assert held[rel] >= 20, (rel, held[rel])
        assert total[rel] == score[rel] + held[rel]
    assert len({a.id for a in english.annotations("heldout")}) >= 30


def test_offset_baseline_is_the_best_fixed_offset_on_its_split():
    baseline = english.offset_baseline("score")
    assert set(baseline) == set(english.ALL_RELATIONS)
    offsets = Counter()
    for a in english.annotations("score"):
        for r in a.relations:
            offsets[r.rel, r.offset] += 1
    for rel, off in baseline.items():
        best = max(n for (rl, _), n in offsets.items() if rl == rel)
        assert offsets[rel, off] == best
    acc = english.offset_accuracy(baseline, "score")
    for rel in english.RELATIONS:
        assert acc[rel] == pytest.approx(
            offsets[rel, baseline[rel]] / english.relation_counts("score")[rel]
        )
    held = english.offset_accuracy(baseline, "heldout")
    assert all(0.0 <= v <= 1.0 for v in held.values())


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("{not json", "not an annotation record"),
        ('{"id": 0, "words": []}', "not an annotation record"),
        ('{"id": 9999, "words": [], "relations": []}', "not a sentence id"),
        ('{"id": 0, "words": ["x"], "relations": []}', "do not match"),
    ],
)
def test_corrupt_annotation_lines_are_refused(line, match):
    with pytest.raises(ValueError, match=match):
        _parse_annotation(3, line, tuple(english.sentences()))


def test_out_of_range_relation_is_refused():
    text = english.sentences()[0]
    words = english.split_words(text)
    line = (
        f'{{"id": 0, "words": {words!r}, "relations": [{{"rel": "det", "dep": 0, "head": 99}}]}}'
    ).replace("'", '"')
    with pytest.raises(ValueError, match="bad relation"):
        _parse_annotation(1, line, (text,))
