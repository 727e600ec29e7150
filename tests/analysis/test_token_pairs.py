"""token_pairs: listed pairs equal the dense pattern; the summary's token scores use them."""

import pytest
import torch

from multihead.analysis import HeadSummary
from multihead.analysis.summary import Rows
from multihead.analysis.token_pairs import matching_pairs, pair_row_sums


def brute_pairs(q_tok, k_tok):
    b = max(q_tok.shape[0], k_tok.shape[0])
    q_tok, k_tok = q_tok.expand(b, -1), k_tok.expand(b, -1)
    return [
        (i, q, k)
        for i in range(b)
        for q in range(q_tok.shape[1])
        for k in range(k_tok.shape[1])
        if q_tok[i, q] >= 0 and q_tok[i, q] == k_tok[i, k]
    ]


@pytest.mark.parametrize("bq,bk", [(1, 1), (3, 3), (1, 3), (3, 1)])
def test_pairs_are_every_match_in_order(bq, bk):
    g = torch.Generator().manual_seed(bq * 10 + bk)
    q_tok = torch.randint(-1, 4, (bq, 7), generator=g)  # -1 = unknown
    k_tok = torch.randint(-1, 4, (bk, 9), generator=g)
    b, q, k = matching_pairs(q_tok, k_tok, limit=10_000)
    assert list(zip(b.tolist(), q.tolist(), k.tolist())) == brute_pairs(q_tok, k_tok)


def test_pairs_over_the_limit_and_empty_inputs():
    same = torch.zeros(1, 8, dtype=torch.long)
    assert matching_pairs(same, same, limit=63) is None  # 64 pairs
    assert len(matching_pairs(same, same, limit=64)[0]) == 64
    empty = torch.zeros(1, 0, dtype=torch.long)
    assert all(len(t) == 0 for t in matching_pairs(empty, same, limit=0))


@pytest.mark.parametrize("shared", [True, False])
def test_pair_row_sums_equal_the_dense_pattern(shared):
    g = torch.Generator().manual_seed(1)
    w = torch.rand(3, 2, 5, 6, generator=g)  # (B, H, tq, Tk)
    q_tok = torch.randint(0, 3, (1 if shared else 3, 5), generator=g)
    k_tok = torch.randint(0, 3, (1 if shared else 3, 6), generator=g)
    pattern = (q_tok[:, :, None] == k_tok[:, None, :]).double()  # (B', tq, Tk)
    want = (w.double() * pattern[:, None]).sum(-1)  # (B, H, tq)
    got = pair_row_sums(w, *matching_pairs(q_tok, k_tok, limit=1000), shared=shared)
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("vocab", [2, 50])  # 2: many matches (the dense pattern); 50: few
@pytest.mark.parametrize("exclude_first", [False, True])
def test_duplicate_and_induction_scores_match_their_definitions(vocab, exclude_first, monkeypatch):
    """TransformerLens's "mul" scores from their patterns, written out per pair: duplicate
    ``p(k) < p(q), t(k) = t(q)``; induction ``1 <= p(k) <= p(q), t(k - 1) = t(q)``; the
    denominator is the attention mass (minus the first key's with exclude_first)."""
    import multihead.analysis.summary as summary

    listed = []

    def spy(*args, **kw):
        listed.append(matching_pairs(*args, **kw) is not None)
        return matching_pairs(*args, **kw)

    monkeypatch.setattr(summary, "matching_pairs", spy)
    g = torch.Generator().manual_seed(vocab)
    b, h, t = 2, 3, 40
    tokens = torch.randint(0, vocab, (b, t), generator=g)
    scores = torch.randn(b, h, t, t, generator=g, dtype=torch.float64)
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    w = scores.masked_fill(~causal, float("-inf")).softmax(-1)  # (B, H, T, T)
    s = HeadSummary(h, exclude_first=exclude_first)
    for q0 in range(0, t, 16):  # in blocks of rows, as record() feeds it
        s.update(w[:, :, q0 : q0 + 16], Rows.plain(t, t, tokens=tokens).block(q0, q0 + 16))
    dup = torch.zeros(b, t, t, dtype=torch.bool)
    ind = torch.zeros(b, t, t, dtype=torch.bool)
    for i in range(b):
        for q in range(t):
            for k in range(t):
                first_ok = k > 0 or not exclude_first
                dup[i, q, k] = k < q and tokens[i, k] == tokens[i, q] and first_ok
                ind[i, q, k] = 1 <= k <= q and tokens[i, k - 1] == tokens[i, q]
    den = w.sum((0, 2, 3)) - (w[..., 0].sum((0, 2)) if exclude_first else 0)
    got = s.scores()
    want_dup = (w * dup[:, None]).sum((0, 2, 3)) / den
    want_ind = (w * ind[:, None]).sum((0, 2, 3)) / den
    torch.testing.assert_close(got["duplicate_token"], want_dup, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got["induction"], want_ind, rtol=1e-12, atol=1e-12)
    assert all(listed) if vocab == 50 else not any(listed)  # both paths are exercised
