"""MultiHeadAttention against a float64 per-head computation, conversions and bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from multihead import MultiHeadAttention, masks
from tests import reference as ref

BACKENDS = ["math", "sdpa", "blockwise"]


def per_head_reference(mha: MultiHeadAttention, query, key=None, value=None, *, allowed=None):
    """The module's output computed head by head in float64 from the per-head weight views,
    the way the literature writes it: z_h = softmax(q_h k_h^T / sqrt(D)) v_h,
    out = sum_h z_h W_O[h] + b_O."""
    key = query if key is None else key
    value = key if value is None else value
    x, kx, vx = query.double(), key.double(), value.double()
    wq, wk, wv, wo = (w.detach().double() for w in (mha.W_Q, mha.W_K, mha.W_V, mha.W_O))
    bq, bk, bv = (
        (b.detach().double() if b is not None else 0.0) for b in (mha.b_Q, mha.b_K, mha.b_V)
    )
    q = torch.einsum("bte,hed->bhtd", x, wq) + (bq[None, :, None] if torch.is_tensor(bq) else 0)
    k = torch.einsum("bte,hed->bhtd", kx, wk) + (bk[None, :, None] if torch.is_tensor(bk) else 0)
    v = torch.einsum("bte,hed->bhtd", vx, wv) + (bv[None, :, None] if torch.is_tensor(bv) else 0)
    z, w = ref.attention(q, k, v, allowed=allowed)
    out = torch.einsum("bhtd,hde->bte", z, wo)
    if mha.out_proj.bias is not None:
        out = out + mha.out_proj.bias.detach().double()
    return out, w


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kv_heads", [8, 2, 1], ids=["mha", "gqa4", "mqa"])
@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_matches_per_head_reference(backend, kv_heads, causal):
    mha = MultiHeadAttention(32, 8, num_kv_heads=kv_heads, backend=backend).double()
    x = torch.randn(3, 11, 32, dtype=torch.float64)
    out, w = mha(x, is_causal=causal, need_weights=True)
    allowed = ref.allowed_matrix(3, 11, 11, causal=causal) if causal else None
    exp, exp_w = per_head_reference(mha, x, allowed=allowed)
    assert out.shape == (3, 11, 32) and w.shape == (3, 8, 11, 11)
    assert ref.max_err(out, exp) < 1e-12 and ref.max_err(w, exp_w) < 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
def test_cross_attention_with_kdim_vdim_and_padding(backend):
    mha = MultiHeadAttention(24, 4, num_kv_heads=2, kdim=10, vdim=6, backend=backend).double()
    x = torch.randn(2, 5, 24, dtype=torch.float64)
    mem_k = torch.randn(2, 9, 10, dtype=torch.float64)
    mem_v = torch.randn(2, 9, 6, dtype=torch.float64)
    pad = masks.key_padding(lengths=torch.tensor([9, 4]))
    out, _ = mha(x, mem_k, mem_v, mask=pad)
    allowed = ref.allowed_matrix(2, 5, 9, key_lengths=[9, 4])
    exp, _ = per_head_reference(mha, x, mem_k, mem_v, allowed=allowed)
    assert ref.max_err(out, exp) < 1e-12


def test_cross_attention_with_packed_weights_shares_one_kv_matmul():
    mha = MultiHeadAttention(16, 4).double()
    x = torch.randn(2, 3, 16, dtype=torch.float64)
    mem = torch.randn(2, 7, 16, dtype=torch.float64)
    out, _ = mha(x, mem)  # value defaults to key
    exp, _ = per_head_reference(mha, x, mem, mem)
    assert ref.max_err(out, exp) < 1e-12


def test_per_head_views_are_views():
    mha = MultiHeadAttention(16, 4, num_kv_heads=2)
    assert mha.W_Q.shape == (4, 16, 4) and mha.W_K.shape == (2, 16, 4)
    assert mha.W_V.shape == (2, 16, 4) and mha.W_O.shape == (4, 4, 16)
    with torch.no_grad():
        mha.W_Q[1].zero_()
        mha.W_O[3].fill_(1.0)
    assert (mha.in_proj.weight[4:8] == 0).all()
    assert (mha.out_proj.weight[:, 12:16] == 1).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_head_mask_equals_removing_the_head_output_weights(backend):
    """Masking head h == zeroing its rows of W_O (the invariant pruning relies on)."""
    mha = MultiHeadAttention(16, 4, backend=backend).double()
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    masked, _ = mha(x, head_mask=torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64))
    with torch.no_grad():
        mha.W_O[1].zero_()
    zeroed, _ = mha(x)
    assert ref.max_err(masked, zeroed) < 1e-12


def test_batched_equals_one_by_one():
    mha = MultiHeadAttention(16, 4, num_kv_heads=2).double()
    x = torch.randn(4, 7, 16, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 5, 1])
    out, _ = mha(x, mask=masks.key_padding(lengths=lengths), is_causal=True)
    for i, n in enumerate(lengths.tolist()):
        single, _ = mha(x[i : i + 1, :n], is_causal=True)
        assert ref.max_err(out[i, :n], single[0]) < 1e-12


def test_drophead_drops_whole_heads_and_keeps_the_expectation():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, drophead=0.5).double()
    x = torch.randn(1, 5, 16, dtype=torch.float64)
    mha.eval()
    plain, _ = mha(x)
    mha.train()
    _, w = mha(x, need_weights=True)
    per_head = w.sum(dim=(2, 3))[0]  # each head's weights sum to T (kept, x2) or 0 (dropped)
    assert set(per_head.round().tolist()) <= {0.0, 10.0}
    outs = torch.stack([mha(x)[0] for _ in range(4000)])
    se = outs.std(dim=0) / 4000**0.5
    assert ((outs.mean(dim=0) - plain).abs() <= 4 * se + 1e-9).float().mean() > 0.99


def test_dropout_only_in_training():
    mha = MultiHeadAttention(16, 4, dropout=0.5, backend="math").double()
    x = torch.randn(1, 5, 16, dtype=torch.float64)
    mha.eval()
    assert torch.equal(mha(x)[0], mha(x)[0])
    mha.train()
    assert not torch.equal(mha(x)[0], mha(x)[0])


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kdim", [None, 12])
def test_from_torch(batch_first, kdim):
    src = nn.MultiheadAttention(16, 4, kdim=kdim, vdim=kdim, batch_first=batch_first).double()
    ours = MultiHeadAttention.from_torch(src)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    mem = torch.randn(2, 7, kdim or 16, dtype=torch.float64)
    args = (x, mem, mem) if batch_first else (x.transpose(0, 1), *(mem.transpose(0, 1),) * 2)
    exp, exp_w = src(*args, average_attn_weights=False)
    exp = exp if batch_first else exp.transpose(0, 1)
    out, w = ours(x, mem, mem, need_weights=True)
    assert ref.max_err(out, exp) < 1e-12 and ref.max_err(w, exp_w) < 1e-12


def test_from_torch_refuses_what_it_cannot_model():
    with pytest.raises(ValueError, match="add_bias_kv or add_zero_attn.*compat"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, add_bias_kv=True))
    with pytest.raises(TypeError, match="torch.nn.MultiheadAttention"):
        MultiHeadAttention.from_torch(nn.Linear(2, 2))


class TutorialHead(nn.Module):
    """The per-head module tutorials write (one Linear per head for q, k and v)."""

    def __init__(self, n_embd, head_size, block_size):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))

    def forward(self, x):
        _, t, _ = x.shape
        k, q = self.key(x), self.query(x)
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5
        wei = wei.masked_fill(self.tril[:t, :t] == 0, float("-inf"))
        return torch.softmax(wei, dim=-1) @ self.value(x)


class TutorialMultiHead(nn.Module):
    def __init__(self, n_embd, n_head, block_size):
        super().__init__()
        self.heads = nn.ModuleList(
            TutorialHead(n_embd, n_embd // n_head, block_size) for _ in range(n_head)
        )
        self.proj = nn.Linear(n_embd, n_embd)

    def forward(self, x):
        return self.proj(torch.cat([h(x) for h in self.heads], dim=-1))


def test_from_head_list_equals_the_tutorial_model():
    tutorial = TutorialMultiHead(32, 4, block_size=16).double()
    fused = MultiHeadAttention.from_head_list(tutorial.heads, tutorial.proj)
    x = torch.randn(3, 16, 32, dtype=torch.float64)
    assert ref.max_err(fused(x, is_causal=True)[0], tutorial(x)) < 1e-12


def test_from_head_list_bad_input():
    with pytest.raises(ValueError, match="heads is empty"):
        MultiHeadAttention.from_head_list([], nn.Linear(4, 4))
    with pytest.raises(TypeError, match=r"heads\[0\] has no nn.Linear attribute 'query'"):
        MultiHeadAttention.from_head_list([nn.Linear(4, 4)], nn.Linear(4, 4))
    tutorial = TutorialMultiHead(8, 2, 4)
    with pytest.raises(ValueError, match="proj takes 6 features"):
        MultiHeadAttention.from_head_list(tutorial.heads, nn.Linear(6, 8))


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        (
            {"embed_dim": 30, "num_heads": 4},
            ValueError,
            "embed_dim=30 is not divisible by num_heads=4",
        ),
        ({"num_kv_heads": 3}, ValueError, "num_kv_heads=3 must divide num_heads=8"),
        ({"num_heads": 0}, ValueError, "num_heads must be a positive integer, got 0"),
        ({"dropout": 1.5}, ValueError, r"dropout must be in \[0, 1\), got 1.5"),
        ({"drophead": -0.1}, ValueError, "drophead"),
        ({"backend": "flash9"}, ValueError, "unknown backend 'flash9'"),
        ({"backend": 3}, TypeError, "backend must be a string"),
    ],
)
def test_bad_construction(kwargs, error, pattern):
    args = {"embed_dim": 32, "num_heads": 8, **kwargs}
    e, h = args.pop("embed_dim"), args.pop("num_heads")
    with pytest.raises(error, match=pattern):
        MultiHeadAttention(e, h, **args)


def test_bad_forward_input():
    mha = MultiHeadAttention(16, 4, kdim=8, vdim=8)
    with pytest.raises(ValueError, match=r"query has shape \(5, 16\) \(2-D\).*batch-first"):
        mha(torch.randn(5, 16), torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="query has shape .* last dim must be embed_dim=16"):
        mha(torch.randn(2, 5, 12), torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="last dim must be kdim=8"):
        mha(torch.randn(2, 5, 16), torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match=r"differ \(10 vs 20\).*batch-first and reads \(B, T, E\)"):
        mha(torch.randn(10, 32, 16), torch.randn(20, 32, 8))
    with pytest.raises(ValueError, match=r"\(B, Tk\) must match"):
        mha(torch.randn(2, 5, 16), torch.randn(2, 5, 8), torch.randn(2, 6, 8))
    with pytest.raises(ValueError, match=r"mask \(bool\) has shape \(5, 5\)"):
        mha(torch.randn(2, 5, 16), torch.randn(2, 6, 8), mask=torch.ones(5, 5, dtype=torch.bool))


def test_batch_mismatch_with_equal_lengths_is_not_called_a_layout_swap():
    # Tq == Tk: the batch dims differ and dim 1 agrees, as (T, B, E) inputs would, but so does
    # a plain batch mismatch; the error names the mismatch, not a guess at the layout.
    mha = MultiHeadAttention(16, 4, kdim=8, vdim=8)
    with pytest.raises(ValueError) as err:
        mha(torch.randn(3, 5, 16), torch.randn(2, 5, 8))
    assert "batch sizes differ (3 vs 2)" in str(err.value)
    assert "look like" not in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        (
            {"is_causal": "no"},
            TypeError,
            r"is_causal must be a bool \(True or False\), got 'no' \(str\)",
        ),
        ({"is_causal": 1}, TypeError, "is_causal must be a bool"),
        ({"need_weights": "yes"}, TypeError, "need_weights must be a bool"),
    ],
)
def test_flags_must_be_booleans(kwargs, error, pattern):
    """`mha(x, is_causal="no")` used to turn causal masking on (any truthy value did)."""
    mha = MultiHeadAttention(16, 4)
    with pytest.raises(error, match=pattern):
        mha(torch.randn(2, 5, 16), **kwargs)


def test_input_dtype_must_match_the_weights():
    mha = MultiHeadAttention(16, 4)
    with pytest.raises(TypeError, match=r"query has dtype torch.float64 but the module's weights"):
        mha(torch.randn(2, 5, 16, dtype=torch.float64))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts for itself: allowed
        assert mha(torch.randn(2, 5, 16, dtype=torch.bfloat16))[0].shape == (2, 5, 16)


@pytest.mark.parametrize("backend", ["math", "sdpa", "blockwise"])
def test_explicit_causal_or_window_mask_with_is_causal(backend):
    """is_causal=True adds a bottom-right causal mask; with Tq == Tk it agrees with any
    explicit causal mask or window (whatever their alignment), so combining them is redundant
    but harmless. Both used to raise "cannot combine causal masks aligned ...\""""
    mha = MultiHeadAttention(16, 4, backend=backend)
    x = torch.randn(2, 7, 16)
    causal, _ = mha(x, is_causal=True)
    torch.testing.assert_close(mha(x, is_causal=True, mask=masks.causal())[0], causal)
    window, _ = mha(x, mask=masks.sliding_window(3))
    torch.testing.assert_close(mha(x, mask=masks.sliding_window(3), is_causal=True)[0], window)
    wide, _ = mha(x, mask=masks.sliding_window(128), is_causal=True)
    torch.testing.assert_close(wide, causal)
