"""Syntactic heads: how well each attention head finds the syntactic head of a word, scored
the way Clark et al. 2019 ("What Does BERT Look At? An Analysis of BERT's Attention", sec. 4.2
and their released code) scored BERT's heads on dependency relations.

1. Word-piece attention becomes word attention: attention TO a word is the sum of the weights
   on its pieces, attention FROM a word is the mean over its pieces' rows. Special tokens
   ([CLS], [SEP]) and padding belong to no word and drop out; rows are not renormalised.
2. Each word's prediction is the other word it attends to most (its own column is excluded, as
   in Clark et al.'s code).
3. A head's accuracy on a relation is the share of the relation's dependents whose prediction
   is their head word (the dependent attends to its head).
4. The baseline predicts the head at one fixed offset from the dependent, the offset that is
   most often right on the data (:func:`multihead.data.english.offset_baseline`).

Everything is vectorised over layers and heads: one sentence's maps are ``(L, H, T, T)``.

A head is ``syntactic`` for a relation when its accuracy beats the relation's baseline by at
least :data:`SYNTACTIC_MARGIN` (10 points, absolute). With ~200 instances per relation the
standard error of an accuracy near 0.5 is ~0.035, so 10 points is about 3 standard errors;
choosing the best of many heads on the same data still flatters it, so compare a head chosen
on one split with the baseline on another (:func:`syntax_scores` takes any annotations).

Legend: L layers, H heads per layer, T tokens, W words, N instances of a relation.

Example (one head, three words, one piece each between [CLS] and [SEP]; word 0 attends
mostly to word 1, which is its head):
    >>> import torch
    >>> from multihead.data.english import Relation
    >>> w = torch.full((1, 1, 5, 5), 0.1)                        # (L, H, T, T)
    >>> w[0, 0, 1, 2] = 0.6
    >>> words = word_attention(w, [None, 0, 1, 2, None])          # (L, H, W, W)
    >>> words.shape, round(float(words[0, 0, 0, 1]), 2)
    (torch.Size([1, 1, 3, 3]), 0.6)
    >>> relation_hits(words, [Relation("det", 0, 1)]).tolist()    # (L, H, N)
    [[[True]]]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from multihead import _checks
from multihead.data.english import RELATIONS, Annotation, Relation

SYNTACTIC_MARGIN = 0.10
"""A head is ``syntactic`` for a relation when its accuracy is at least this much above the
relation's fixed-offset baseline (absolute accuracy points)."""


def word_attention(weights: torch.Tensor, token_words: Sequence[int | None]) -> torch.Tensor:
    """Piece-level attention ``(..., T, T)`` -> word-level ``(..., W, W)``.

    Args:
        weights: attention weights, rows = queries, columns = keys, over T tokens.
        token_words: per token, the index of its word in ``[0, W)`` or None (special tokens,
            padding); W is one more than the largest index.

    Attention to a word sums its pieces' columns; attention from a word averages its pieces'
    rows (Clark et al. 2019). Tokens mapped to None are dropped; every word needs a piece.
    """
    _checks.require_tensor("weights", weights)
    _checks.require_floating("weights", weights)
    if weights.dim() < 2 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(f"weights must be (..., T, T), got shape {tuple(weights.shape)}")
    t = weights.shape[-1]
    if len(token_words) != t:
        raise ValueError(f"token_words has {len(token_words)} entries but weights have T={t}")
    ids = [w for w in token_words if w is not None]
    if not ids:
        raise ValueError("token_words maps no token to a word")
    if any(isinstance(w, bool) or not isinstance(w, int) or w < 0 for w in ids):
        raise ValueError(f"token_words must hold ints >= 0 or None, got {list(token_words)}")
    n_words = max(ids) + 1
    onehot = torch.zeros(n_words, t, dtype=weights.dtype, device=weights.device)  # (W, T)
    for tok, word in enumerate(token_words):
        if word is not None:
            onehot[word, tok] = 1.0
    pieces = onehot.sum(dim=1)  # (W,)
    if bool((pieces == 0).any()):
        missing = (pieces == 0).nonzero().flatten().tolist()
        raise ValueError(f"words {missing} have no token in token_words; every word needs one")
    to_words = weights @ onehot.T  # (..., T, W): summed over each word's pieces
    return (onehot / pieces[:, None]) @ to_words  # (..., W, W): averaged over its rows


def predicted_heads(words: torch.Tensor) -> torch.Tensor:
    """``(..., W, W)`` word attention -> ``(..., W)`` int64: for each word the other word it
    attends to most (ties: the first). A one-word sentence predicts word 0 for itself."""
    w = words.shape[-1]
    if w == 1:
        return torch.zeros(words.shape[:-1], dtype=torch.long, device=words.device)
    eye = torch.eye(w, dtype=torch.bool, device=words.device)
    return words.masked_fill(eye, float("-inf")).argmax(dim=-1)


def relation_hits(words: torch.Tensor, relations: Sequence[Relation]) -> torch.Tensor:
    """``(..., W, W)`` word attention and N relations of that sentence -> ``(..., N)`` bool:
    whether each dependent's most-attended other word is its head."""
    pred = predicted_heads(words)  # (..., W)
    dep = torch.tensor([r.dep for r in relations], dtype=torch.long, device=words.device)
    head = torch.tensor([r.head for r in relations], dtype=torch.long, device=words.device)
    return pred[..., dep] == head  # (..., N)


@dataclass(frozen=True)
class RelationScore:
    """One relation's scores for every head.

    Attributes:
        relation: the relation label (``"det"``, ...).
        accuracy: ``(L, H)`` float: the share of dependents whose most-attended word is
            their head, per head (head ids as the layer holds them).
        count: N, the number of dependents scored.
        baseline_offset: the fixed offset ``head - dep`` of the baseline.
        baseline_accuracy: the share of those N dependents whose head is at that offset.
    """

    relation: str
    accuracy: torch.Tensor
    count: int
    baseline_offset: int
    baseline_accuracy: float

    def best(self) -> tuple[int, int, float]:
        """``(layer, head, accuracy)`` of the most accurate head (ties: the first)."""
        flat = int(self.accuracy.flatten().argmax())
        layer, head = divmod(flat, self.accuracy.shape[1])
        return layer, head, float(self.accuracy[layer, head])


def best_offset(annotations: Iterable[Annotation], relation: str) -> tuple[int, float]:
    """The fixed offset ``head - dep`` most often right for ``relation`` on ``annotations``
    (ties: smaller ``|offset|``, then negative) and its accuracy there."""
    offsets = [r.offset for a in annotations for r in a.relations if r.rel == relation]
    if not offsets:
        raise ValueError(f"no instance of relation {relation!r} in the annotations")
    best = min(set(offsets), key=lambda o: (-offsets.count(o), abs(o), o))
    return best, offsets.count(best) / len(offsets)


def score_relations(
    maps: Sequence[torch.Tensor],
    annotations: Sequence[Annotation],
    token_words: Sequence[Sequence[int | None]],
    *,
    relations: Sequence[str] = RELATIONS,
    baseline: dict[str, int] | None = None,
) -> dict[str, RelationScore]:
    """Score every head on each relation, from per-sentence attention maps.

    Args:
        maps: per annotated sentence, ``(L, H, T_i, T_i)`` attention weights over its tokens.
        annotations: the sentences' annotations (words and relations), same order.
        token_words: per sentence, per token, its word index in the annotation's words or
            None (see :func:`multihead.convert.align_words`).
        relations: the relation labels to score.
        baseline: per relation, the fixed offset of the baseline; default the best offset on
            these annotations (:func:`best_offset`).

    Returns:
        ``{relation: RelationScore}``.
    """
    if not (len(maps) == len(annotations) == len(token_words)):
        raise ValueError(
            f"maps, annotations and token_words must have one entry per sentence, got "
            f"{len(maps)}, {len(annotations)} and {len(token_words)}"
        )
    if not maps:
        raise ValueError("no sentence to score: annotations is empty")
    hits: dict[str, list[torch.Tensor]] = {rel: [] for rel in relations}
    for m, ann, tw in zip(maps, annotations, token_words):
        words = word_attention(m.float(), tw)  # (L, H, W, W)
        if words.shape[-1] != len(ann.words):
            raise ValueError(
                f"sentence {ann.id}: token_words cover {words.shape[-1]} words but the "
                f"annotation has {len(ann.words)}"
            )
        for rel in relations:
            rels = [r for r in ann.relations if r.rel == rel]
            if rels:
                hits[rel].append(relation_hits(words, rels))  # (L, H, N_i)
    out = {}
    for rel in relations:
        if not hits[rel]:
            raise ValueError(f"no instance of relation {rel!r} in the annotations")
        per = torch.cat(hits[rel], dim=-1).float()  # (L, H, N)
        offset, base_acc = best_offset(annotations, rel)
        if baseline is not None and rel in baseline:
            offset = baseline[rel]
            base_acc = _offset_accuracy(annotations, rel, offset)
        out[rel] = RelationScore(rel, per.mean(dim=-1), per.shape[-1], offset, base_acc)
    return out


def _offset_accuracy(annotations: Iterable[Annotation], relation: str, offset: int) -> float:
    offs = [r.offset for a in annotations for r in a.relations if r.rel == relation]
    return sum(o == offset for o in offs) / len(offs)


def syntactic_heads(
    scores: dict[str, RelationScore], *, margin: float = SYNTACTIC_MARGIN
) -> dict[tuple[int, int], list[str]]:
    """``{(layer, head): [relations]}``: the heads whose accuracy on a relation is at least
    ``margin`` above its baseline (the ``syntactic`` role), each with those relations."""
    _checks.require_number("margin", margin, minimum=0.0)
    out: dict[tuple[int, int], list[str]] = {}
    for rel, s in scores.items():
        for layer, head in (s.accuracy >= s.baseline_accuracy + margin).nonzero().tolist():
            out.setdefault((layer, head), []).append(rel)
    return dict(sorted(out.items()))


@torch.no_grad()
def attention_maps(
    model: torch.nn.Module, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """Every attention layer's weights ``(B, H_l, T, T)`` for one forward of an encoder
    (``padding_mask`` ``(B, T)``, True = real token), through
    :func:`~multihead.analysis.record` (the forward itself stays on the fast backend).
    Layers are numbered as :func:`~multihead.analysis.attention_layers` numbers them."""
    from multihead.analysis.record import record

    with record(model, mode="weights") as rec:
        model(tokens, padding_mask=padding_mask)
    return [w.detach() for w in rec.weights]


def syntax_scores(
    model: torch.nn.Module,
    tokenizer,
    annotations: Sequence[Annotation],
    *,
    relations: Sequence[str] = RELATIONS,
    baseline: dict[str, int] | None = None,
    batch_size: int = 32,
) -> dict[str, RelationScore]:
    """Tokenize the annotated sentences, record every layer's attention and score every
    head on each relation (see :func:`score_relations`).

    Args:
        model: an encoder taking ``(tokens, padding_mask=...)`` (True = real token), e.g.
            :func:`multihead.convert.minilm`'s; all its layers must have the same head count.
        tokenizer: its :class:`~multihead.convert.Tokenizer`.
        annotations: annotated sentences (:func:`multihead.data.english.annotations`).
    """
    _checks.require_int("batch_size", batch_size, minimum=1)
    if not annotations:
        raise ValueError("annotations is empty; expected at least one annotated sentence")
    maps, token_words = [], []
    for start in range(0, len(annotations), batch_size):
        chunk = annotations[start : start + batch_size]
        enc = tokenizer.encode([a.text for a in chunk])
        layers = attention_maps(model, enc.ids, enc.attention_mask)  # L x (B, H, T, T)
        stacked = torch.stack(layers, dim=1)  # (B, L, H, T, T)
        for i, ann in enumerate(chunk):
            n = int(enc.lengths[i])
            maps.append(stacked[i, :, :, :n, :n])  # (L, H, T_i, T_i)
            token_words.append(enc.word_index(i, ann.words)[:n])
    return score_relations(maps, annotations, token_words, relations=relations, baseline=baseline)


def with_syntactic_roles(
    report, scores: dict[str, RelationScore], *, margin: float = SYNTACTIC_MARGIN
):
    """A copy of a :class:`~multihead.analysis.HeadReport` of the same (unpruned) model with,
    for every head, its accuracy per relation as score ``syntax_<relation>`` and the role
    ``syntactic`` where :func:`syntactic_heads` gives it one (the relations it beats the
    baseline on are in ``model["syntactic"]``)."""
    from dataclasses import replace

    from multihead.analysis.report import HeadReport

    if not isinstance(report, HeadReport):
        raise TypeError(f"report must be a HeadReport, got {type(report).__name__}")
    roles = syntactic_heads(scores, margin=margin)
    heads = []
    for h in report.heads:
        extra = {}
        for rel, s in scores.items():
            if h.layer >= s.accuracy.shape[0] or h.head >= s.accuracy.shape[1]:
                raise ValueError(
                    f"the report has head {h.layer}-{h.head} but the syntax scores cover "
                    f"{tuple(s.accuracy.shape)} (layers, heads); score the same model"
                )
            extra[f"syntax_{rel}"] = float(s.accuracy[h.layer, h.head])
        role = ["syntactic"] if (h.layer, h.head) in roles else []
        heads.append(replace(h, roles=[*h.roles, *role], scores={**h.scores, **extra}))
    model = dict(report.model)
    model["syntactic"] = {f"{a}-{b}": rels for (a, b), rels in roles.items()}
    model["syntactic_margin"] = margin
    return HeadReport(model, heads)
