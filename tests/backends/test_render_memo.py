"""The sdpa backend's mask memo: reused only for the same, unmodified tensors."""

import torch

from multihead import masks
from multihead.backends.sdpa import MEMO
from multihead.functional import attention
from tests.reference import attention as reference


def _mask(qpos, kpos):
    return masks.causal().with_query_positions(qpos).with_key_positions(kpos)


def test_memo_follows_in_place_changes_of_the_key_positions():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 2, 1, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    qpos = torch.tensor([4])
    kpos = torch.tensor([[0, 1, 2, 3, 4]])
    MEMO.clear()
    first, _ = attention(q, k, v, mask=_mask(qpos, kpos), backend="sdpa")
    again, _ = attention(q, k, v, mask=_mask(qpos, kpos), backend="sdpa")  # memo hit
    torch.testing.assert_close(first, again, atol=0, rtol=0)
    kpos[0, 1:3] = -1  # slots emptied in place: the memo must not serve the old mask
    changed, _ = attention(q, k, v, mask=_mask(qpos, kpos), backend="sdpa")
    keep = torch.tensor([True, False, False, True, True])
    want, _ = reference(q, k[:, :, keep], v[:, :, keep])
    torch.testing.assert_close(changed.double(), want, atol=1e-6, rtol=0)


def test_memo_keeps_empty_rows_zero():
    q, k = torch.randn(1, 1, 2, 4), torch.randn(1, 1, 3, 4)
    allowed = torch.tensor([[True, True, False], [False, False, False]])
    MEMO.clear()
    for _ in range(2):
        out, _ = attention(q, k, k, mask=allowed, backend="sdpa")
        assert (out[0, 0, 1] == 0).all() and torch.isfinite(out).all()
