"""Every score against a plain loop-based float64 reference, and hand-built maps with known
answers."""

import math

import numpy as np
import pytest
import torch

from multihead.analysis import scores as S


def random_maps(b=2, h=3, tq=6, tk=6, causal=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, h, tq, tk, generator=g, dtype=torch.float64) * 2
    if causal:
        qp = torch.arange(tk - tq, tk).view(-1, 1)
        s = s.masked_fill(torch.arange(tk).view(1, -1) > qp, -math.inf)
    return torch.softmax(s, dim=-1)


def reference(w, tokens=None, qmask=None, allowed=None, special=(), freq=None):
    """Plain loops over heads, batch, rows and keys in python floats."""
    b, h, tq, tk = w.shape
    out = {
        k: []
        for k in (
            "entropy",
            "confidence",
            "mean_distance",
            "sink",
            "previous_token",
            "next_token",
            "offset2",
            "duplicate_token",
            "induction",
            "special_token",
            "rare_token",
            "normalized_entropy",
        )
    }
    for hh in range(h):
        acc = dict.fromkeys(out, 0.0)
        rows = mass = nrows = 0
        for bb in range(b):
            for q in range(tq):
                row = [float(w[bb, hh, q, k]) for k in range(tk)]
                if (qmask is not None and not qmask[bb, q]) or sum(row) <= 0:
                    continue
                qp = tk - tq + q
                rows += 1
                mass += sum(row)
                ent = -sum(x * math.log(x) for x in row if x > 0)
                acc["entropy"] += ent
                acc["confidence"] += max(row)
                acc["mean_distance"] += sum(x * abs(qp - k) for k, x in enumerate(row))
                acc["sink"] += row[0]
                for name, off in (("previous_token", 1), ("next_token", -1), ("offset2", 2)):
                    if 0 <= qp - off < tk:
                        acc[name] += row[qp - off]
                vis = [k for k in range(tk) if allowed is None or allowed[bb, 0, q, k]]
                if len(vis) > 1:
                    acc["normalized_entropy"] += ent / math.log(len(vis))
                    nrows += 1
                if tokens is None:
                    continue
                t = [int(x) for x in tokens[bb]]
                for k, x in enumerate(row):
                    acc["duplicate_token"] += x * (k < qp and t[k] == t[qp])
                    acc["induction"] += x * (1 <= k <= qp and t[k - 1] == t[qp])
                    acc["special_token"] += x * (t[k] in special)
                if freq is not None:
                    top = max(range(tk), key=lambda k: (row[k], -k))
                    acc["rare_token"] += float(freq[t[top]]) == min(float(freq[t[k]]) for k in vis)
        for name in out:
            if name in ("entropy", "confidence", "rare_token"):
                out[name].append(acc[name] / rows)
            elif name == "normalized_entropy":
                out[name].append(acc[name] / nrows)
            else:
                out[name].append(acc[name] / mass)
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}


@pytest.mark.parametrize("causal", [True, False])
def test_scores_match_the_loop_reference(causal):
    w = random_maps(causal=causal)
    tokens = torch.randint(0, 4, (2, 6))
    freq = torch.tensor([5.0, 1.0, 3.0, 2.0])
    allowed = (w > 0)[:, :1] if causal else None
    qmask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    ref = reference(w, tokens, qmask, allowed, special=(2,), freq=freq)
    kw = dict(query_mask=qmask)
    got = {
        "entropy": S.entropy(w, **kw),
        "confidence": S.confidence(w, **kw),
        "mean_distance": S.mean_distance(w, **kw),
        "sink": S.sink_score(w, **kw),
        "previous_token": S.previous_token_score(w, **kw),
        "next_token": S.next_token_score(w, **kw),
        "offset2": S.offset_score(w, 2, **kw),
        "duplicate_token": S.duplicate_token_score(w, tokens, **kw),
        "induction": S.induction_score(w, tokens, **kw),
        "special_token": S.special_token_score(w, tokens, [2], **kw),
        "rare_token": S.rare_token_score(w, tokens, freq, allowed=allowed, **kw),
        "normalized_entropy": S.normalized_entropy(w, allowed=allowed, **kw),
    }
    for name, value in got.items():
        assert value.shape == (3,), name
        torch.testing.assert_close(value, ref[name], rtol=1e-5, atol=1e-6, msg=name)


def test_hand_built_maps_with_known_answers():
    t = 8
    prev = torch.zeros(1, 1, t, t)
    prev[0, 0, 0, 0] = 1.0
    prev[0, 0, torch.arange(1, t), torch.arange(t - 1)] = 1.0  # query q reads q - 1
    assert S.previous_token_score(prev).item() == pytest.approx(7 / 8)
    assert S.previous_token_score(prev, exclude_first=True).item() == pytest.approx(6 / 6)
    assert S.confidence(prev).item() == 1.0 and S.entropy(prev).item() == 0.0
    assert S.mean_distance(prev).item() == pytest.approx(7 / 8)
    assert S.offset_score(prev, 0).item() == pytest.approx(1 / 8)
    uniform = torch.full((1, 1, 4, 4), 0.25)
    assert S.entropy(uniform).item() == pytest.approx(math.log(4))
    assert S.normalized_entropy(uniform).item() == pytest.approx(1.0)
    assert S.next_token_score(uniform).item() == pytest.approx(0.25 * 3 / 4)


def tl_induction_mul(w, tokens):
    """TransformerLens head_detector's induction pattern and "mul" score, built as it does
    (duplicate pattern, rolled one to the right, lower triangle), for one sequence."""
    t = tokens.numpy()
    n = len(t)
    eq = np.equal(np.tile(t, (n, 1)), np.tile(t, (n, 1)).T).astype(float)
    np.fill_diagonal(eq, 0)
    dup = np.tril(eq)
    shifted = np.roll(dup, 1, axis=1)
    shifted[:, 0] = 0
    pattern = np.tril(shifted)
    a = w.numpy()
    return (a * pattern).sum() / a.sum(), (a * dup).sum() / a.sum()


def test_induction_matches_transformerlens_mul_on_repeated_random_tokens():
    g = torch.Generator().manual_seed(1)
    half = torch.randperm(20, generator=g)[:7]
    tokens = torch.cat([half, half])  # (14,): a random sequence repeated
    n = len(tokens)
    w = random_maps(b=1, h=1, tq=n, tk=n, seed=3)
    ind, dup = tl_induction_mul(w[0, 0], tokens)
    assert S.induction_score(w, tokens[None]).item() == pytest.approx(ind, rel=1e-9)
    assert S.duplicate_token_score(w, tokens[None]).item() == pytest.approx(dup, rel=1e-9)
    ideal = torch.zeros(1, 1, n, n)
    ideal[0, 0, :7, 0] = 1.0
    ideal[0, 0, torch.arange(7, n), torch.arange(1, 8)] = 1.0  # the token after the first copy
    assert S.induction_score(ideal, tokens[None]).item() == pytest.approx(7 / n)
    assert S.induction_score(ideal, tokens[None], exclude_first=True).item() == 1.0


def test_scores_take_positions_for_cached_rows():
    w = random_maps(b=1, h=2, tq=6, tk=6, seed=5)
    rows = w[:, :, 4:]  # the last two queries, as a decoding step sees them
    full = S.previous_token_score(w)
    q_pos = torch.tensor([4, 5])
    part = S.previous_token_score(rows, positions=(q_pos, torch.arange(6)))
    expected = w[0, :, [4, 5], [3, 4]].sum(-1) / 2
    torch.testing.assert_close(part, expected.double())
    assert not torch.allclose(part, full)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"weights has shape \(2, 2\)"):
        S.entropy(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="query_mask must be bool"):
        S.entropy(torch.zeros(1, 1, 2, 2), query_mask=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="tokens must be integer ids"):
        S.induction_score(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="positions have 3 queries"):
        S.entropy(torch.zeros(1, 1, 2, 2), positions=(torch.arange(3), torch.arange(2)))


def test_token_frequencies():
    f = S.token_frequencies([torch.tensor([[0, 1, 1]]), torch.tensor([3, 9])], 4)
    assert f.tolist() == [1.0, 2.0, 0.0, 1.0]
