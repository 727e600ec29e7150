"""compat.MultiheadAttention against torch.nn.MultiheadAttention itself: outputs, weights and
gradients within 1e-5 (fp32) over torch's arguments, state_dict both ways, and the documented
difference on fully masked rows."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from multihead.compat import MultiheadAttention
from tests.backends.test_registry import _Shapes

E, H, L, S, N = 16, 4, 5, 7, 3
TOL = 1e-5


def _pair(**kwargs):
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(E, H, **kwargs)
    torch.manual_seed(0)
    ours = MultiheadAttention(E, H, **kwargs)
    return theirs, ours


def _inputs(batch_first, kdim, batched=True):
    kd = kdim or E
    shape = (
        (lambda t, d: (N, t, d) if batch_first else (t, N, d)) if batched else (lambda t, d: (t, d))
    )
    return torch.randn(*shape(L, E)), torch.randn(*shape(S, kd)), torch.randn(*shape(S, kd))


def _masks(kind, batched=True):
    kpm = torch.zeros(N, S, dtype=torch.bool)
    kpm[1, -3:] = True
    am = torch.rand(L, S) > 0.7
    am[:, 0] = False  # keep one key per row so torch does not produce NaN
    causal = torch.triu(torch.ones(L, S, dtype=torch.bool), diagonal=1)
    options = {
        "none": {},
        "kpm_bool": {"key_padding_mask": kpm},
        "kpm_float": {"key_padding_mask": kpm.float().masked_fill(kpm, -1e9)},
        "am_bool": {"attn_mask": am},
        "am_float": {"attn_mask": torch.randn(L, S)},
        "am_3d": {
            "attn_mask": (torch.rand(N * H, L, S) > 0.7) & ~torch.eye(L, S, dtype=torch.bool)
        },
        "am_and_kpm": {"attn_mask": am, "key_padding_mask": kpm},
        "causal_hint": {"attn_mask": causal, "is_causal": True},
        "causal_hint_kpm": {"attn_mask": causal, "is_causal": True, "key_padding_mask": kpm},
    }
    out = dict(options[kind])
    if not batched:
        if "key_padding_mask" in out:
            out["key_padding_mask"] = out["key_padding_mask"][0]
        if "attn_mask" in out and out["attn_mask"].dim() == 3:
            out["attn_mask"] = out["attn_mask"][:H]
    return out


def _compare(theirs, ours, inputs, **kwargs):
    leaves_t = [x.clone().requires_grad_() for x in inputs]
    leaves_o = [x.clone().requires_grad_() for x in inputs]
    out_t, w_t = theirs(*leaves_t, **kwargs)
    out_o, w_o = ours(*leaves_o, **kwargs)
    assert out_o.shape == out_t.shape
    assert (out_o - out_t).abs().max() <= TOL
    assert (w_t is None) == (w_o is None)
    loss_t = out_t.square().sum() + (w_t.square().sum() if w_t is not None else 0)
    loss_o = out_o.square().sum() + (w_o.square().sum() if w_o is not None else 0)
    if w_t is not None:
        assert w_o.shape == w_t.shape and (w_o - w_t).abs().max() <= TOL
    loss_t.backward()
    loss_o.backward()
    for a, b in zip(leaves_t, leaves_o):
        assert (a.grad - b.grad).abs().max() <= TOL
    params_t = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert (p.grad - params_t[name].grad).abs().max() <= TOL, name


GRID = list(
    itertools.product(
        [False, True],  # batch_first
        [None, 12],  # kdim = vdim
        [False, True],  # add_bias_kv
        [False, True],  # add_zero_attn
        [True, False],  # bias
    )
)


@pytest.mark.parametrize(("batch_first", "kdim", "bias_kv", "zero_attn", "bias"), GRID)
@pytest.mark.parametrize(
    "mask",
    [
        "none",
        "kpm_bool",
        "kpm_float",
        "am_bool",
        "am_float",
        "am_3d",
        "am_and_kpm",
        "causal_hint",
        "causal_hint_kpm",
    ],
)
def test_matches_torch(batch_first, kdim, bias_kv, zero_attn, bias, mask):
    theirs, ours = _pair(
        batch_first=batch_first,
        kdim=kdim,
        vdim=kdim,
        add_bias_kv=bias_kv,
        add_zero_attn=zero_attn,
        bias=bias,
    )
    inputs = _inputs(batch_first, kdim)
    if mask.startswith("causal"):
        inputs = (inputs[0], *(x[:, :L] if batch_first else x[:L] for x in inputs[1:]))
    m = _masks(mask)
    if mask.startswith("causal"):
        m["attn_mask"] = m["attn_mask"][:, :L]
        if "key_padding_mask" in m:
            m["key_padding_mask"] = m["key_padding_mask"][:, :L]
    for need, avg in [(False, True), (True, True), (True, False)]:
        _compare(theirs, ours, inputs, need_weights=need, average_attn_weights=avg, **m)


@pytest.mark.parametrize("mask", ["none", "kpm_bool", "am_3d", "am_float"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_matches_torch(mask, batch_first):
    theirs, ours = _pair(batch_first=batch_first)
    _compare(theirs, ours, _inputs(batch_first, None, batched=False), **_masks(mask, False))


@pytest.mark.parametrize("train", [False, True])
def test_train_and_eval_modes(train):
    theirs, ours = _pair(batch_first=True)
    theirs.train(train)
    ours.train(train)
    x = torch.randn(N, L, E)
    kpm = torch.zeros(N, L, dtype=torch.bool)
    kpm[0, -2:] = True
    with torch.no_grad():
        for need in (False, True):
            a, _ = theirs(x, x, x, key_padding_mask=kpm, need_weights=need)
            b, _ = ours(x, x, x, key_padding_mask=kpm, need_weights=need)
            assert (a - b).abs().max() <= TOL


def test_fresh_modules_are_initialized_like_torch():
    for kwargs in ({}, {"kdim": 5, "vdim": 3, "add_bias_kv": True}):
        theirs, ours = _pair(**kwargs)
        sd_t, sd_o = theirs.state_dict(), ours.state_dict()
        assert sd_t.keys() == sd_o.keys()
        for key in sd_t:
            assert torch.equal(sd_t[key], sd_o[key]), key


def test_state_dict_loads_both_ways():
    theirs = nn.MultiheadAttention(E, H, kdim=6, vdim=10, add_bias_kv=True)
    ours = MultiheadAttention(E, H, kdim=6, vdim=10, add_bias_kv=True)
    assert ours.load_state_dict(theirs.state_dict()) is not None
    back = nn.MultiheadAttention(E, H, kdim=6, vdim=10, add_bias_kv=True)
    back.load_state_dict(ours.state_dict())
    for (k1, v1), (k2, v2) in zip(back.state_dict().items(), theirs.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)


def test_fully_masked_rows_give_zeros_where_torch_gives_nan():
    theirs, ours = _pair(batch_first=True)
    x = torch.randn(2, L, E, requires_grad=True)
    kpm = torch.zeros(2, L, dtype=torch.bool)
    kpm[1] = True  # example 1 may attend to nothing
    out_t, _ = theirs(x, x, x, key_padding_mask=kpm)
    out_o, w_o = ours(x, x, x, key_padding_mask=kpm)
    assert torch.isnan(out_t[1]).all()  # torch's documented failure (pytorch#41508)
    assert torch.isfinite(out_o).all()
    # Zero attention output, so the row is the output projection's bias.
    assert torch.allclose(out_o[1], ours.out_proj.bias.expand(L, E))
    assert (w_o[1] == 0).all()
    assert (out_o[0] - out_t[0]).abs().max() <= TOL
    out_o.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_eval_without_weights_never_materializes_scores():
    ours = MultiheadAttention(64, 4, batch_first=True).eval()
    t = 512
    x = torch.randn(1, t, 64)
    kpm = torch.zeros(1, t, dtype=torch.bool)
    kpm[0, -7:] = True
    causal = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    with torch.no_grad(), _Shapes() as rec:
        ours(x, x, x, key_padding_mask=kpm, need_weights=False)
        ours(x, x, x, attn_mask=causal, is_causal=True, need_weights=False)
    largest = max(torch.Size(s).numel() for _, s in rec.shapes)
    assert largest < t * t, f"a {largest}-element tensor was created"


@pytest.mark.parametrize("kwargs", [{}, {"add_bias_kv": True, "add_zero_attn": True, "kdim": 12}])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("batch_first", [False, True])
def test_dropout_one_drops_every_weight_like_torch(batch_first, batched, kwargs):
    # torch takes dropout=1.0: in training every attention weight is dropped, so the output is
    # out_proj.bias, the weights are 0 and the inputs get zero gradients; in eval it is unused.
    theirs, ours = _pair(batch_first=batch_first, dropout=1.0, vdim=kwargs.get("kdim"), **kwargs)
    nn.init.normal_(theirs.out_proj.bias, std=0.1)
    ours.load_state_dict(theirs.state_dict())
    inputs = _inputs(batch_first, kwargs.get("kdim"), batched)
    mask = _masks("am_and_kpm", batched)
    for need, avg in [(False, True), (True, True), (True, False)]:
        theirs.zero_grad()
        ours.zero_grad()
        _compare(theirs, ours, inputs, need_weights=need, average_attn_weights=avg, **mask)
        out, weights = ours(*inputs, need_weights=need, average_attn_weights=avg, **mask)
        assert torch.equal(out, ours.out_proj.bias.expand_as(out))
        assert weights is None or not weights.any()
    theirs.eval()
    ours.eval()
    _compare(theirs, ours, inputs, **mask)


@pytest.mark.parametrize(
    ("dropout", "error", "pattern"),
    [
        (1.5, ValueError, r"dropout must be in \[0, 1\], got 1.5"),
        (-0.1, ValueError, r"dropout must be in \[0, 1\], got -0.1"),
        (True, TypeError, "dropout must be a float in .* got bool"),
    ],
)
def test_dropout_outside_0_1_is_refused_at_construction(dropout, error, pattern):
    # torch takes these too and fails in the first training forward; we fail at once.
    nn.MultiheadAttention(E, H, dropout=dropout)
    with pytest.raises(error, match=pattern):
        MultiheadAttention(E, H, dropout=dropout)


def _nested(lengths, width=E, layout=torch.strided, requires_grad=False):
    parts = [torch.randn(n, width) for n in lengths]
    return torch.nested.nested_tensor(parts, layout=layout, requires_grad=requires_grad)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype")
@pytest.mark.parametrize("weights", [(True, True), (True, False), (False, True)])
def test_nested_matches_torchs_fast_path(weights):
    # torch takes nested tensors only on its inference fast path: eval, no grad, batch_first,
    # strided layout, self-attention with one tensor. Its weights are padded with zeros.
    need, avg = weights
    theirs, ours = _pair(batch_first=True)
    theirs.eval()
    ours.eval()
    x = _nested([3, 1, 6])
    with torch.no_grad():
        out_t, w_t = theirs(x, x, x, need_weights=need, average_attn_weights=avg)
        out_o, w_o = ours(x, x, x, need_weights=need, average_attn_weights=avg)
    assert out_o.is_nested and out_o.layout == torch.strided
    for a, b in zip(out_t.unbind(), out_o.unbind(), strict=True):
        assert a.shape == b.shape and (a - b).abs().max() <= TOL
    assert (w_t is None) == (w_o is None)
    if w_t is not None:
        assert w_o.shape == w_t.shape and (w_o - w_t).abs().max() <= TOL


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype")
@pytest.mark.parametrize("layout", [torch.strided, torch.jagged])
@pytest.mark.parametrize(
    ("kwargs", "cross"),
    [({}, False), ({}, True), ({"kdim": 12, "vdim": 12}, True), ({"add_bias_kv": True}, False)],
)
def test_nested_in_training_matches_one_sequence_at_a_time(layout, kwargs, cross):
    # Beyond torch: nested inputs with gradients, in both layouts, and cross-attention with
    # other lengths, equal to torch run on each sequence as a batch of one.
    theirs, ours = _pair(batch_first=True, **kwargs)
    kd = kwargs.get("kdim", E)
    q = _nested([3, 1, 6], layout=layout, requires_grad=True)
    kv = _nested([4, 2, 5], kd, layout=layout, requires_grad=True) if cross else q
    out, w = ours(q, kv, kv, average_attn_weights=False)
    assert out.is_nested and out.layout == layout
    loss = sum(o.square().sum() for o in out.unbind()) + w.square().sum()
    loss.backward()
    ref_loss, leaves = 0.0, []
    for i, (qi, ki) in enumerate(zip(q.unbind(), kv.unbind(), strict=True)):
        qd = qi.detach()[None].requires_grad_()  # (1, L_i, E)
        kd_ = ki.detach()[None].requires_grad_() if cross else qd  # (1, S_i, kdim)
        leaves.append((qd, kd_))
        out_i, w_i = theirs(qd, kd_, kd_, average_attn_weights=False)
        assert (out.unbind()[i] - out_i[0]).abs().max() <= TOL
        # Weights: real keys, then padding (weight 0), then the add_bias_kv column.
        li, si, extra = qd.shape[1], kd_.shape[1], w_i.shape[-1] - kd_.shape[1]
        pad_end = w.shape[-1] - extra
        assert (w[i, :, :li, :si] - w_i[0, ..., :si]).abs().max() <= TOL
        assert torch.allclose(w[i, :, :li, pad_end:], w_i[0, ..., si:], rtol=0, atol=TOL)
        assert not w[i, :, li:].any() and not w[i, :, :, si:pad_end].any()
        ref_loss = ref_loss + out_i.square().sum() + w_i.square().sum()
    ref_loss.backward()
    for i, (qd, kd_) in enumerate(leaves):
        assert (q.grad.unbind()[i] - qd.grad[0]).abs().max() <= 1e-4
        if cross:
            assert (kv.grad.unbind()[i] - kd_.grad[0]).abs().max() <= 1e-4
    params_t = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert (p.grad - params_t[name].grad).abs().max() <= 1e-4, name


def _with_bias_dtype(module, dtype):
    module.in_proj_bias = nn.Parameter(module.in_proj_bias.detach().to(dtype))
    return module


@pytest.mark.parametrize(
    ("dtype", "bias_dtype"),
    [
        (torch.float32, torch.float16),
        (torch.float32, torch.bfloat16),
        (torch.float32, torch.float64),
        (torch.float64, torch.float16),
    ],
)
@pytest.mark.parametrize("kdim", [None, 12])
@pytest.mark.parametrize("self_attention", [True, False])
@pytest.mark.parametrize("mode", ["train", "infer"])
def test_in_proj_bias_of_another_dtype_works_like_torch(
    dtype, bias_dtype, kdim, self_attention, mode
):
    # torch (batch_first=True) adds an in_proj_bias of another dtype in the input's dtype.
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(E, H, batch_first=True, kdim=kdim, vdim=kdim, dtype=dtype)
    nn.init.normal_(theirs.in_proj_bias)
    ours = MultiheadAttention(E, H, batch_first=True, kdim=kdim, vdim=kdim, dtype=dtype)
    ours.load_state_dict(theirs.state_dict())
    theirs, ours = _with_bias_dtype(theirs, bias_dtype), _with_bias_dtype(ours, bias_dtype)
    for m in (theirs, ours):
        m.train(mode == "train")
    q = torch.randn(N, L, E, dtype=dtype)
    kv = q if self_attention and kdim is None else torch.randn(N, S, kdim or E, dtype=dtype)
    with torch.set_grad_enabled(mode == "train"):
        for need in (True, False):
            out_t, w_t = theirs(q, kv, kv, need_weights=need)
            out_o, w_o = ours(q, kv, kv, need_weights=need)
            assert out_o.dtype == out_t.dtype == dtype
            assert (out_o - out_t).abs().max() <= TOL
            if need:
                assert (w_o - w_t).abs().max() <= TOL
    if mode == "train":
        out_t.square().sum().backward()
        out_o.square().sum().backward()
        b_t, b_o = theirs.in_proj_bias.grad, ours.in_proj_bias.grad
        assert b_o.dtype == b_t.dtype == bias_dtype
        # Summed in the input's dtype, then rounded to the bias's: a few ulps of the coarser.
        eps = max(torch.finfo(dtype).eps, torch.finfo(bias_dtype).eps)
        assert (b_o.double() - b_t.double()).abs().max() <= 4 * eps * b_t.abs().max()


@pytest.mark.parametrize("batched", [True, False])
def test_in_proj_bias_of_another_dtype_works_in_every_layout(batched):
    # torch takes it only where its linear sees a non-contiguous input (batch_first, batched);
    # we take it in every layout, with the numbers of torch's batch_first path.
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(E, H, batch_first=True)
    nn.init.normal_(theirs.in_proj_bias)
    ours = MultiheadAttention(E, H)  # batch_first=False
    ours.load_state_dict(theirs.state_dict())
    theirs, ours = _with_bias_dtype(theirs, torch.float16), _with_bias_dtype(ours, torch.float16)
    x = torch.randn(N, L, E) if batched else torch.randn(L, E)
    # torch's batch_first path, with a batch of 2 for the unbatched case: its transpose must
    # give a non-contiguous input for torch to take the bias.
    ref = x if batched else torch.stack([x, x])  # (N, L, E)
    out_t = theirs(ref, ref, ref)[0] if batched else theirs(ref, ref, ref)[0][0]
    mine = x.transpose(0, 1).contiguous() if batched else x  # (L, N, E) or (L, E)
    out_o = ours(mine, mine, mine)[0]
    out_o = out_o.transpose(0, 1) if batched else out_o
    assert (out_o - out_t).abs().max() <= TOL
    plain = _with_bias_dtype(nn.MultiheadAttention(E, H), torch.float16)
    with pytest.raises(RuntimeError, match="same dtype"):
        plain(mine, mine, mine)


# The behaviours PyTorch's own tests check for nn.MultiheadAttention (its module-info samples
# and test/nn/test_multihead_attention.py), checked here for the drop-in, against torch itself.


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize(
    ("bias", "bias_kv", "zero_attn"), list(itertools.product([True, False], repeat=3))
)
def test_torch_module_samples(bias, bias_kv, zero_attn, batch_first, train):
    # Unbatched (3, 3) inputs, 3 heads of width 1, key padding and a 3-D (H, L, S) mask hiding
    # the last key: equal to torch, and to the same call on a batch of one.
    torch.manual_seed(0)
    kwargs = {"bias": bias, "add_bias_kv": bias_kv, "add_zero_attn": zero_attn}
    theirs = nn.MultiheadAttention(3, 3, batch_first=batch_first, **kwargs).train(train)
    ours = MultiheadAttention(3, 3, batch_first=batch_first, **kwargs).train(train)
    ours.load_state_dict(theirs.state_dict())
    hide = torch.tensor([False, False, True])
    for kpm, am in itertools.product([None, hide], [None, hide.expand(3, 3, 3)]):
        x = [torch.randn(3, 3) for _ in range(3)]
        m = {"key_padding_mask": kpm, "attn_mask": am}
        _compare(theirs, ours, x, **m)
        one = [t.unsqueeze(0 if batch_first else 1) for t in x]
        out1, w1 = ours(*one, key_padding_mask=None if kpm is None else kpm[None], attn_mask=am)
        out, w = ours(*x, **m)
        assert (out1.squeeze(0 if batch_first else 1) - out).abs().max() <= TOL
        assert (w1[0] - w).abs().max() <= TOL


def test_3d_attn_mask_equals_one_example_at_a_time():
    ours = MultiheadAttention(8, 4)
    q, k = torch.rand(8, 2, 8), torch.rand(8, 3, 8)  # (N, L, E), (N, S, E)
    allowed = torch.randint(0, 2, (8, 2, 3)).bool()
    allowed[..., 0] = True  # no fully masked rows
    am = torch.zeros(8, 2, 3).masked_fill(~allowed, float("-inf"))  # float: -inf hides
    out = ours(
        q.transpose(0, 1),
        k.transpose(0, 1),
        k.transpose(0, 1),
        attn_mask=am.repeat_interleave(4, dim=0),
    )[0]  # (L, N, E)
    for i in range(8):
        qi, ki = q[i, :, None], k[i, :, None]  # (L, 1, E), (S, 1, E)
        assert (ours(qi, ki, ki, attn_mask=am[i])[0][:, 0] - out[:, i]).abs().max() <= TOL


def test_bias_false_removes_both_biases():
    for m in (nn.MultiheadAttention(8, 4, bias=False), MultiheadAttention(8, 4, bias=False)):
        assert m.in_proj_bias is None and m.out_proj.bias is None


@pytest.mark.parametrize(("embed", "heads"), [(14, 7), (16, 8)])
def test_both_masks_on_torchs_fast_path(embed, heads):
    # Eval, no grad, batch_first self-attention with attn_mask and key_padding_mask: torch's
    # fast path (taken with an even head count) and ours agree except on rows with no key left
    # (NaN in torch, 0 in ours).
    theirs, ours = _pair_sized(embed, heads)
    x = torch.rand(8, 5, embed)
    am = torch.randint(0, 2, (5, 5)).bool()
    kpm = torch.randint(0, 2, (8, 5)).bool()
    with torch.no_grad():
        out_t, _ = theirs(x, x, x, attn_mask=am, key_padding_mask=kpm)
        out_o, _ = ours(x, x, x, attn_mask=am, key_padding_mask=kpm)
    empty = (am[None] | kpm[:, None]).all(-1)  # (N, L): rows with no key left
    assert empty.any() and (~empty).any()
    assert (out_t[~empty] - out_o[~empty]).abs().max() <= TOL
    assert torch.isfinite(out_o).all()


def _pair_sized(embed, heads, **kwargs):
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(embed, heads, batch_first=True, **kwargs).eval()
    ours = MultiheadAttention(embed, heads, batch_first=True, **kwargs).eval()
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("train", [True, False])
def test_output_keeps_the_dtype(dtype, batch_first, train):
    model = MultiheadAttention(32, 8, batch_first=batch_first).to(dtype).train(train)
    q, k, v = (torch.randn(10, 4, 32, dtype=dtype) for _ in range(3))
    with torch.set_grad_enabled(train):
        out, _ = model(q, k, v, need_weights=False)
    assert out.shape == q.shape and out.dtype == dtype


@pytest.mark.parametrize(
    "kwargs", [{}, {"bias": False}, {"kdim": 2, "vdim": 2}], ids=["fast", "no_bias", "no_in_proj"]
)
def test_small_float64_modules_in_inference(kwargs):
    theirs, ours = _pair_sized(4, 4, dtype=torch.float64, **kwargs)
    q = torch.rand(4, 4, 4, dtype=torch.float64)
    k = q if not kwargs.get("kdim") else torch.rand(4, 4, 2, dtype=torch.float64)
    with torch.no_grad():
        out_t, w_t = theirs(q, k, k)
        out_o, w_o = ours(q, k, k)
    assert (out_t - out_o).abs().max() <= 1e-12 and (w_t - w_o).abs().max() <= 1e-12


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype")
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"add_bias_kv": True},
        {"add_zero_attn": True},
        {"add_bias_kv": True, "add_zero_attn": True},
    ],
)
def test_jagged_nested_outside_torchs_fast_path(kwargs):
    # Newer torch takes jagged inputs outside its fast path too; here they work in eval with
    # grad enabled, under no_grad and inference_mode, without requires_grad, and with a
    # different query, key and value, equal to torch one sequence at a time.
    theirs, ours = _pair_sized(10, 5, **kwargs)
    nt1 = _nested([4, 6], 10, layout=torch.jagged)
    nt2, nt3 = _nested([7, 16], 10, layout=torch.jagged), _nested([7, 16], 10, layout=torch.jagged)
    calls = [
        ((nt1, nt1, nt1), torch.enable_grad),
        ((nt1, nt2, nt3), torch.enable_grad),
        ((nt1, nt1, nt1), torch.no_grad),
        ((nt1, nt1, nt1), torch.inference_mode),
    ]
    for (q, k, v), mode in calls:
        with mode():
            out, _ = ours(q, k, v)
            for i, o in enumerate(out.unbind()):
                qi, ki, vi = (t.unbind()[i][None] for t in (q, k, v))  # (1, T_i, E)
                assert (theirs(qi, ki, vi)[0][0] - o).abs().max() <= TOL
