import math

import pytest
import torch

from multihead.analysis import js_divergence, pairwise_js, redundant_clusters


def reference_js(a, b):
    """Mean over rows of 1/2 KL(a||m) + 1/2 KL(b||m), in python floats."""
    total = count = 0
    for bb in range(a.shape[0]):
        for q in range(a.shape[1]):
            p, r = a[bb, q].tolist(), b[bb, q].tolist()
            if sum(p) <= 0 or sum(r) <= 0:
                continue
            d = 0.0
            for x, y in zip(p, r):
                m = (x + y) / 2
                d += 0.5 * (x * math.log(x / m) if x else 0) + 0.5 * (
                    y * math.log(y / m) if y else 0
                )
            total, count = total + d, count + 1
    return total / count


def test_js_matches_reference_and_bounds():
    a = torch.softmax(torch.randn(2, 3, 5, 6, dtype=torch.float64), dim=-1)
    b = torch.softmax(torch.randn(2, 2, 5, 6, dtype=torch.float64), dim=-1)
    b[0, 1, 2] = 0.0  # a row that does not count
    d = js_divergence(a, b, max_elements=100)  # several row chunks
    assert d.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            assert d[i, j].item() == pytest.approx(reference_js(a[:, i], b[:, j]), rel=1e-9)
    one = torch.eye(4).view(1, 1, 4, 4)
    other = torch.eye(4)[[1, 2, 3, 0]].view(1, 1, 4, 4)
    assert js_divergence(one, other).item() == pytest.approx(math.log(2))
    assert js_divergence(one, one).item() == 0.0


def test_pairwise_and_clusters():
    w0 = torch.softmax(torch.randn(1, 2, 6, 6) * 3, dim=-1)
    w2 = torch.cat([w0[:, 1:], torch.softmax(torch.randn(1, 1, 6, 6) * 3, dim=-1)], dim=1)
    ids, d = pairwise_js([w0, None, w2])
    assert ids == [(0, 0), (0, 1), (2, 0), (2, 1)]
    torch.testing.assert_close(d, d.T)
    assert d[1, 2] == 0.0
    assert redundant_clusters(ids, d, threshold=1e-9) == [[(0, 1), (2, 0)]]
    chain = torch.tensor([[0, 0.1, 0.9], [0.1, 0, 0.1], [0.9, 0.1, 0]])
    assert redundant_clusters([(0, 0), (0, 1), (1, 0)], chain, threshold=0.2) == [
        [(0, 0), (0, 1), (1, 0)]
    ]  # single linkage joins through (0, 1)
    with pytest.raises(ValueError, match="same B, Tq and Tk"):
        js_divergence(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 2))
    with pytest.raises(ValueError, match="expected \\(3, 3\\)"):
        redundant_clusters([(0, 0)] * 3, torch.zeros(2, 2))
