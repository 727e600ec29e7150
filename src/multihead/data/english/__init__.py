"""English sentences written for multihead, with hand-annotated dependency relations on a subset,
for analysing the attention heads of pretrained English models (see :mod:`.corpus` for the data
and the annotation guidelines, :mod:`.words` for the word tokenisation).

Example:
    >>> from multihead.data import english
    >>> english.sentences("heldout")[0]
    'The committee approved the new budget after a long debate.'
    >>> english.split_words("Did you lock it?")
    ['Did', 'you', 'lock', 'it', '?']
"""

from multihead.data.english.corpus import (
    ALL_RELATIONS,
    HELDOUT_EVERY,
    RELATIONS,
    SPLITS,
    Annotation,
    Relation,
    annotations,
    offset_accuracy,
    offset_baseline,
    relation_counts,
    sentence_ids,
    sentences,
    split_of,
)
from multihead.data.english.words import split_words, word_spans

__all__ = [
    "ALL_RELATIONS",
    "HELDOUT_EVERY",
    "RELATIONS",
    "SPLITS",
    "Annotation",
    "Relation",
    "annotations",
    "offset_accuracy",
    "offset_baseline",
    "relation_counts",
    "sentence_ids",
    "sentences",
    "split_of",
    "split_words",
    "word_spans",
]
