import pytest
import torch

from multihead.analysis import HeadSummary
from multihead.analysis.summary import Rows, key_index, tokens_at


def test_key_index_for_any_key_layout():
    plain = torch.arange(5).view(1, 5)
    assert key_index(plain, torch.tensor([[0, 4, 5, -1]])).tolist() == [[0, 4, -1, -1]]
    ring = torch.tensor([[4, 5, 2, 3], [0, 1, -1, -1]])  # a ring cache and a short row
    got = key_index(ring, torch.tensor([[5, 2, 1, 0], [5, 2, 1, 0]]))
    assert got.tolist() == [[1, 2, -1, -1], [-1, -1, 1, 0]]


def test_tokens_at():
    table = torch.tensor([[7, 8, 9]])
    assert tokens_at(table, torch.tensor([[2, -1, 3, 0]])).tolist() == [[9, -1, -1, 7]]


def test_merge_adds_and_checks():
    w = torch.softmax(torch.randn(2, 3, 4, 4), dim=-1)
    whole, a, b = HeadSummary(3), HeadSummary(3), HeadSummary(3)
    whole.update(w, Rows.plain(4, 4))
    a.update(w[:1], Rows.plain(4, 4))
    b.update(w[1:], Rows.plain(4, 4))
    a.merge(b)
    for name, value in whole.scores().items():
        torch.testing.assert_close(a.scores()[name], value, equal_nan=True)
    with pytest.raises(ValueError, match="cannot merge a summary of 2 heads"):
        a.merge(HeadSummary(2))
    with pytest.raises(ValueError, match="weights have 2 heads"):
        a.update(w[:, :2], Rows.plain(4, 4))


def test_nothing_counted_is_nan_and_token_scores_need_tokens():
    s = HeadSummary(2)
    s.update(torch.zeros(1, 2, 3, 3), Rows.plain(3, 3))  # masked heads: no row counts
    assert torch.isnan(s.scores()["entropy"]).all()
    s = HeadSummary(1)
    s.update(torch.full((1, 1, 2, 2), 0.5), Rows.plain(2, 2))
    assert torch.isnan(s.scores()["induction"]).all() and "rare_token" not in s.scores()


def test_pairs_sum_the_divergence_of_the_full_map():
    from multihead.analysis import js_divergence

    w = torch.softmax(torch.randn(2, 3, 7, 7), dim=-1)
    s = HeadSummary(3, pairs=True)
    for q0 in range(0, 7, 3):
        s.update(w[:, :, q0 : q0 + 3], Rows.plain(7, 7).block(q0, q0 + 3))
    torch.testing.assert_close(s.divergence(), js_divergence(w, w), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="pairs=False"):
        HeadSummary(3).divergence()
