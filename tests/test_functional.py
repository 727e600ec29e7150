"""The functional core against the float64 oracle, for every backend.

Tolerance rule (FlashAttention's): error against float64 at most 2x the error of PyTorch's own
F.scaled_dot_product_attention at the same dtype, plus 1e-6.
"""

from __future__ import annotations

import functools

import pytest
import torch

from multihead import masks
from multihead.backends import Backend, blockwise, get_backend, register_backend
from multihead.functional import attention, request_for, select_backend
from tests import reference as ref

DTYPES = {"fp32": torch.float32, "fp64": torch.float64, "bf16": torch.bfloat16}
BACKENDS = ["math", "sdpa", "blockwise", "blockwise_small"]


@pytest.fixture(scope="module", autouse=True)
def _small_block_backend():
    """blockwise with tiny blocks, so every grid case crosses query *and* key block edges
    (the online softmax path) and block skipping."""
    register_backend(
        Backend(
            name="blockwise_small",
            forward=functools.partial(blockwise.forward, block_q=16, block_k=24),
            unsupported=get_backend("blockwise").unsupported,
        )
    )


@functools.cache
def _allowed(batch, tq, tk, causal, align, window, lengths):
    return ref.allowed_matrix(
        batch,
        tq,
        tk,
        causal=causal,
        align=align,
        window=window,
        key_lengths=list(lengths) if lengths else None,
    )


def _mask(causal, align, window, lengths):
    m = masks.none()
    if window is not None:
        m = m & masks.sliding_window(window, causal=causal, align=align)
    elif causal:
        m = m & masks.causal(align=align)
    if lengths:
        m = m & masks.key_padding(lengths=torch.tensor(lengths))
    return m


def _inputs(b, hq, hkv, tq, tk, d, dv, dtype):
    q = torch.randn(b, hq, tq, d, dtype=torch.float64).to(dtype)
    k = torch.randn(b, hkv, tk, d, dtype=torch.float64).to(dtype)
    v = torch.randn(b, hkv, tk, dv, dtype=torch.float64).to(dtype)
    return q, k, v


@functools.cache
def _expected(dtype, b, hq, hkv, tq, tk, causal, align, window, lengths, d, dv):
    """Inputs, float64 oracle results and PyTorch's own errors for one case, shared by every
    backend (the reference is the expensive part of the grid)."""
    gen = torch.Generator().manual_seed(hash((b, hq, hkv, tq, tk, d, dv)) % 2**31)
    q, k, v = (
        torch.randn(*shape, dtype=torch.float64, generator=gen).to(dtype)
        for shape in ((b, hq, tq, d), (b, hkv, tk, d), (b, hkv, tk, dv))
    )
    grad_out = torch.randn(b, hq, tq, dv, dtype=torch.float64, generator=gen)
    allowed = _allowed(b, tq, tk, causal, align, window, lengths)
    exp, exp_grads = _run(
        lambda a, c, e: ref.attention(a, c, e, allowed=allowed)[0], grad_out, q, k, v
    )
    own, own_grads = _run(
        lambda a, c, e: ref.sdpa_at_dtype(a, c, e, allowed=allowed), grad_out, q, k, v
    )
    own_errs = [ref.max_err(own, exp)] + [ref.max_err(o, e) for o, e in zip(own_grads, exp_grads)]
    return (q, k, v), grad_out, exp, exp_grads, own_errs


def _run(fn, grad_out, *tensors):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves, grad_out.to(out.dtype))
    return out, grads


def _check(backend, dtype, b, hq, hkv, tq, tk, causal, align, window, lengths, d=16, dv=16):
    lengths = tuple(lengths) if lengths else None
    (q, k, v), grad_out, exp, exp_grads, own_errs = _expected(
        dtype, b, hq, hkv, tq, tk, causal, align, window, lengths, d, dv
    )
    m = _mask(causal, align, window, lengths)
    out, grads = _run(
        lambda a, c, e: attention(a, c, e, mask=m, backend=backend)[0], grad_out, q, k, v
    )
    assert out.dtype == dtype and out.shape == (b, hq, tq, dv)
    assert torch.isfinite(out).all()
    err = ref.max_err(out, exp)
    assert err <= ref.tolerance(own_errs[0]), f"output error {err:.3g} vs torch's {own_errs[0]:.3g}"
    for name, g, e, own_err in zip("qkv", grads, exp_grads, own_errs[1:]):
        assert torch.isfinite(g).all(), f"non-finite d{name}"
        gerr = ref.max_err(g, e)
        assert gerr <= ref.tolerance(own_err), f"d{name} error {gerr:.3g} vs torch's {own_err:.3g}"


@pytest.mark.parametrize("seq", [1, 7, 97, 1025])
@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=lambda h: f"gqa{4 // h}")
@pytest.mark.parametrize("window", [None, 16], ids=["full", "win16"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
@pytest.mark.parametrize("dtype", list(DTYPES), ids=list(DTYPES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_grid_against_float64(backend, dtype, causal, window, kv_heads, seq):
    if seq == 1025 and dtype == "bf16" and backend == "blockwise_small":
        pytest.skip("covered by the other bf16 backends; tiny blocks at T=1025 in bf16 are slow")
    lengths = None if seq < 7 else (seq, seq - 5)
    _check(backend, DTYPES[dtype], 2, 4, kv_heads, seq, seq, causal, "top_left", window, lengths)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("align", ["top_left", "bottom_right"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("sizes", [(5, 33), (33, 5), (1, 40), (40, 40)])
def test_cross_lengths_and_alignment(backend, align, causal, sizes):
    tq, tk = sizes
    # Bottom-right with Tq > Tk leaves the first rows with no key: they must come out as 0.
    _check(backend, torch.float32, 2, 4, 2, tq, tk, causal, align, None, None, d=8, dv=12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fully_masked_rows_are_zero_with_finite_gradients(backend):
    q, k, v = (torch.randn(2, 3, 6, 8, requires_grad=True) for _ in range(3))
    allowed = torch.rand(2, 3, 6, 6) > 0.5
    allowed[0, 1, 2] = False  # one empty row
    allowed[1, :, :, :] = False  # an example with nothing to attend to
    out, w = attention(q, k, v, mask=allowed, backend=backend, need_weights=True)
    assert (out[0, 1, 2] == 0).all() and (out[1] == 0).all()
    assert (w[0, 1, 2] == 0).all() and (w[1] == 0).all()
    exp, exp_w = ref.attention(q, k, v, allowed=allowed)
    assert ref.max_err(out, exp) < 1e-5 and ref.max_err(w, exp_w) < 1e-6
    (out.sum() + w.sum()).backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()


@pytest.mark.parametrize("backend", ["math", "sdpa", "blockwise", "blockwise_small"])
def test_float_mask_and_dense_bool(backend):
    b, h, t = 2, 4, 40
    q, k, v = _inputs(b, h, h, t, t, 8, 8, torch.float64)
    bias = torch.randn(b, h, t, t, dtype=torch.float64)
    bias[0, 0, 3, :] = -torch.inf  # an empty row through the float mask
    allowed = torch.rand(1, 1, t, t) > 0.3
    m = masks.dense(bias) & masks.dense(allowed)
    out, w = attention(q, k, v, mask=m, backend=backend, need_weights=True)
    exp, exp_w = ref.attention(q, k, v, allowed=allowed, bias=bias)
    assert ref.max_err(out, exp) < 1e-12 and ref.max_err(w, exp_w) < 1e-12


class _DistanceBias:
    """A per-head bias from positions, like ALiBi: -slope_h * |i - j|."""

    def __init__(self, slopes: torch.Tensor):
        self.slopes = slopes
        self.num_heads = slopes.numel()

    def __call__(self, q_pos, k_pos, dtype):
        dist = (q_pos[:, None, :, None] - k_pos.view(1, 1, 1, -1)).abs()  # (1|B, 1, tq, tk)
        return (-self.slopes.view(1, -1, 1, 1) * dist).to(dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("causal", [False, True])
def test_head_bias_computed_per_tile(backend, causal):
    b, h, t = 2, 4, 70
    q, k, v = _inputs(b, h, 2, t, t, 8, 8, torch.float64)
    slopes = torch.tensor([0.5, 0.25, 0.125, 0.0625], dtype=torch.float64)
    m = masks.bias(_DistanceBias(slopes))
    if causal:
        m = m & masks.causal()
    out, _ = attention(q, k, v, mask=m, backend=backend)
    pos = torch.arange(t, dtype=torch.float64)
    dense_bias = -slopes.view(1, -1, 1, 1) * (pos.view(-1, 1) - pos.view(1, -1)).abs()
    allowed = ref.allowed_matrix(b, t, t, causal=causal)
    exp, _ = ref.attention(q, k, v, allowed=allowed, bias=dense_bias)
    assert ref.max_err(out, exp) < 1e-12


@pytest.mark.parametrize("backend", ["math", "sdpa", "blockwise"])
def test_need_weights_matches_reference_and_output(backend):
    q, k, v = _inputs(2, 6, 3, 9, 11, 8, 5, torch.float32)
    m = masks.causal(align="bottom_right") & masks.key_padding(lengths=torch.tensor([11, 6]))
    out, w = attention(q, k, v, mask=m, need_weights=True, backend=backend)
    out2, none = attention(q, k, v, mask=m, backend=backend)
    assert none is None
    assert torch.equal(out, out2)  # asking for weights does not change the output path
    allowed = ref.allowed_matrix(2, 9, 11, causal=True, align="bottom_right", key_lengths=[11, 6])
    exp, exp_w = ref.attention(q, k, v, allowed=allowed)
    assert w.shape == (2, 6, 9, 11)
    assert ref.max_err(w, exp_w) < 1e-6
    assert ref.max_err(out, exp) < 1e-5


@pytest.mark.parametrize("backend", ["math", "sdpa", "blockwise"])
@pytest.mark.parametrize("shape", ["heads", "batch_heads"])
def test_head_mask_scales_each_head(backend, shape):
    q, k, v = _inputs(2, 4, 2, 7, 7, 8, 8, torch.float64)
    hm = torch.tensor([1.0, 0.0, 0.5, 2.0], dtype=torch.float64)
    if shape == "batch_heads":
        hm = torch.stack([hm, hm.flip(0)])
    out, w = attention(
        q, k, v, mask=masks.causal(), head_mask=hm, need_weights=True, backend=backend
    )
    allowed = ref.allowed_matrix(2, 7, 7, causal=True)
    exp, exp_w = ref.attention(q, k, v, allowed=allowed, head_mask=hm)
    assert ref.max_err(out, exp) < 1e-12 and ref.max_err(w, exp_w) < 1e-12


def test_head_mask_gradient_is_the_head_contribution():
    """d(sum(g * out))/d(head_mask[h]) = sum(g_h * out_h) for the unmasked output."""
    q, k, v = _inputs(1, 4, 4, 6, 6, 8, 8, torch.float64)
    hm = torch.ones(4, dtype=torch.float64, requires_grad=True)
    out, _ = attention(q, k, v, head_mask=hm)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    plain, _ = ref.attention(q, k, v)
    expected = (plain * g).sum(dim=(0, 2, 3))
    assert torch.allclose(hm.grad, expected, atol=1e-12)


@pytest.mark.parametrize("backend", ["math", "sdpa"])
def test_dropout_is_applied_in_expectation(backend):
    torch.manual_seed(1)
    q, k, v = _inputs(1, 2, 2, 8, 8, 4, 4, torch.float64)
    exp, _ = ref.attention(q, k, v)
    outs = torch.stack([attention(q, k, v, dropout_p=0.3, backend=backend)[0] for _ in range(3000)])
    assert not torch.equal(outs[0], outs[1])
    # Inverted dropout keeps the expectation: mean of 3000 draws within ~4 standard errors.
    se = outs.std(dim=0) / 3000**0.5
    assert ((outs.mean(dim=0) - exp).abs() <= 4 * se + 1e-9).float().mean() > 0.99


def test_dropout_weights_are_the_ones_used():
    q, k, v = _inputs(1, 2, 2, 5, 5, 4, 4, torch.float64)
    out, w = attention(q, k, v, dropout_p=0.5, need_weights=True)
    vv = v.repeat_interleave(1, dim=1)
    assert torch.allclose(out, w @ vv, atol=1e-12)


# ---------------------------------------------------------------------- backend selection
def _select(*, t=64, window=None, dropout=0.0, need_weights=False, bias=False, grad_mask=False):
    q = torch.zeros(1, 4, t, 8)
    k = v = torch.zeros(1, 4, t, 8)
    m = masks.sliding_window(window) if window else masks.causal()
    if bias:
        m = m & masks.bias(_DistanceBias(torch.ones(4)))
    if grad_mask:
        m = m & masks.dense(torch.zeros(t, t, requires_grad=True))
        q.requires_grad_()
    r = request_for(q, k, v, mask=m, dropout_p=dropout, need_weights=need_weights)
    return select_backend(r).name


def test_auto_selection():
    assert _select() == "sdpa"
    assert _select(t=4096, window=256) == "blockwise"
    assert _select(t=64, window=16) == "sdpa"  # too short for blocks to pay off
    assert _select(need_weights=True, dropout=0.1) == "math"
    assert _select(t=4096, window=256, dropout=0.1) == "sdpa"  # blockwise has no dropout
    assert _select(t=8192, bias=True) == "blockwise"  # a dense (H, T, T) bias would be 1 GiB
    assert _select(t=4096, window=256, grad_mask=True) == "sdpa"


def test_named_backend_that_cannot_serve_says_why():
    q = k = v = torch.randn(1, 2, 4, 8)
    with pytest.raises(ValueError, match="blockwise.*dropout"):
        attention(q, k, v, dropout_p=0.1, backend="blockwise")
    with pytest.raises(ValueError, match="sdpa.*dropped-out weights"):
        attention(q, k, v, dropout_p=0.1, need_weights=True, backend="sdpa")


# ---------------------------------------------------------------------- bad input
def _qkv(b=2, h=4, t=5, d=8):
    return torch.randn(b, h, t, d), torch.randn(b, h, t, d), torch.randn(b, h, t, d)


@pytest.mark.parametrize(
    ("change", "error", "pattern"),
    [
        (lambda q, k, v: (q[0], k, v), ValueError, r"q has shape \(4, 5, 8\).*\(B, Hq, Tq, D\)"),
        (lambda q, k, v: (q, k.double(), v), TypeError, "k has dtype torch.float64"),
        (lambda q, k, v: (q, k, v[:1]), ValueError, "batch sizes differ"),
        (lambda q, k, v: (q, k[..., :4], v), ValueError, "head dim 4 but q has 8"),
        (lambda q, k, v: (q, k[:, :3], v[:, :3]), ValueError, "3 heads, which must divide"),
        (lambda q, k, v: (q, k, v[:, :, :3]), ValueError, r"v has shape .* but k has"),
        (lambda q, k, v: (q.long(), k.long(), v.long()), TypeError, "floating-point"),
        (lambda q, k, v: (q, [1], v), TypeError, "k must be a torch.Tensor"),
        (
            lambda q, k, v: (q[..., :0], k[..., :0], v),
            ValueError,
            r"head dim D = 0, but D >= 1 is expected",
        ),
    ],
)
def test_bad_tensors(change, error, pattern):
    with pytest.raises(error, match=pattern):
        attention(*change(*_qkv()))


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"mask": torch.ones(5, 6, dtype=torch.bool)}, ValueError, r"mask \(bool\) has shape"),
        ({"mask": torch.ones(3, 5, 5, dtype=torch.bool)}, ValueError, r"\(B, H, Tq, Tk\)"),
        ({"mask": torch.ones(5, 5, dtype=torch.int32)}, TypeError, "dtype torch.int32"),
        ({"mask": torch.ones(5, dtype=torch.bool)}, ValueError, r"1-D.*\(Tq, Tk\)"),
        ({"mask": "causal"}, TypeError, "AttentionMask"),
        ({"dropout_p": 1.0}, ValueError, r"dropout_p must be in \[0, 1\)"),
        ({"dropout_p": -0.1}, ValueError, "dropout_p"),
        ({"backend": "flash3"}, ValueError, "unknown backend 'flash3'.*'blockwise'"),
        ({"head_mask": torch.ones(3)}, ValueError, r"head_mask has shape \(3,\)"),
        ({"scale": float("nan")}, ValueError, "scale must be finite"),
        ({"need_weights": 1}, TypeError, "need_weights must be a bool"),
        ({"need_weights": "no"}, TypeError, r"need_weights must be a bool \(True or False\)"),
        (
            {"mask": torch.full((5, 5), torch.nan)},
            ValueError,
            r"mask \(float\) of shape \(5, 5\) holds 25 NaN or \+inf",
        ),
        (
            {"mask": masks.key_padding(lengths=torch.tensor([5, 9]))},
            ValueError,
            r"key_lengths must lie in \[0, Tk=5\]",
        ),
        (
            {"mask": masks.key_padding(mask=torch.ones(2, 4, dtype=torch.bool))},
            ValueError,
            r"key_padding has shape \(2, 4\).*True = real key",
        ),
    ],
)
def test_bad_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        attention(*_qkv(), **kwargs)


# ---------------------------------------------------------------------- parity with SDPA
@pytest.mark.parametrize("backend", ["math", "sdpa", "blockwise"])
@pytest.mark.parametrize(
    "case",
    ["plain", "is_causal", "bool_mask", "float_mask", "gqa", "scale", "cross"],
)
def test_parity_with_torch_sdpa(backend, case):
    """Same call, same numbers as F.scaled_dot_product_attention (fp32, within 1e-5)."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    b, h, t, d = 2, 4, 33, 16
    q, k, v = (torch.randn(b, h, t, d) for _ in range(3))
    ours_kw: dict = {}
    theirs_kw: dict = {}
    if case == "is_causal":
        ours_kw["mask"], theirs_kw["is_causal"] = masks.causal(), True
    elif case == "bool_mask":
        allowed = torch.rand(b, 1, t, t) > 0.4
        allowed[..., 0] = True
        ours_kw["mask"] = theirs_kw["attn_mask"] = allowed
    elif case == "float_mask":
        ours_kw["mask"] = theirs_kw["attn_mask"] = torch.randn(h, t, t)[None]
    elif case == "gqa":
        k, v = k[:, :1], v[:, :1]
        theirs_kw["enable_gqa"] = True
    elif case == "scale":
        ours_kw["scale"] = theirs_kw["scale"] = 0.37
    elif case == "cross":
        k, v = torch.randn(b, h, 50, d), torch.randn(b, h, 50, 24)
    out, _ = attention(q, k, v, backend=backend, **ours_kw)
    assert (out - sdpa(q, k, v, **theirs_kw)).abs().max() < 1e-5


def test_device_mismatch_is_named():
    q = torch.randn(1, 2, 3, 4)
    k = torch.randn(1, 2, 3, 4, device="meta")
    with pytest.raises(ValueError, match="k is on device meta but q is on cpu"):
        attention(q, k, k)


def test_zero_heads_give_an_empty_output():
    """Every head pruned away (Hq = Hkv = 0) is a valid, empty attention."""
    q, k, v = torch.randn(2, 0, 5, 8), torch.randn(2, 0, 7, 8), torch.randn(2, 0, 7, 3)
    for backend in ("auto", "math", "sdpa", "blockwise"):
        out, w = attention(q, k, v, mask=masks.causal(), need_weights=True, backend=backend)
        assert out.shape == (2, 0, 5, 3) and w.shape == (2, 0, 5, 7)


# ---------------------------------------------------------------------- NaN and Inf
NONFINITE_BACKENDS = [*BACKENDS, "auto"]


def _nonfinite_mask(kind, b, h, tq, tk):
    """A mask for the NaN/Inf tests, and its (allowed, bias) for the oracle. Every mask lets
    each row see key 0 except the last query row of example 0, which sees nothing."""
    empty = torch.ones(b, 1, tq, tk, dtype=torch.bool)
    empty[0, 0, -1] = False
    bias = None
    if kind == "none":
        m, allowed = masks.dense(empty), empty
    elif kind == "causal":
        m = masks.causal() & masks.dense(empty)
        allowed = ref.allowed_matrix(b, tq, tk, causal=True) & empty
    elif kind == "padding":
        m = masks.key_padding(lengths=torch.tensor([tk - 1, tk])) & masks.dense(empty)
        allowed = ref.allowed_matrix(b, tq, tk, key_lengths=[tk - 1, tk]) & empty
    else:  # float mask: finite biases, -inf for the empty row
        bias = torch.randn(1, h, tq, tk, dtype=torch.float64).expand(b, h, tq, tk).clone()
        bias[0, :, -1] = -torch.inf
        m, allowed = masks.dense(bias.float()), None
    return m, allowed, bias


@pytest.mark.parametrize("backend", NONFINITE_BACKENDS)
@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("kind", ["none", "causal", "padding", "float"])
@pytest.mark.parametrize("where", ["q", "k", "v"])
@pytest.mark.parametrize("value", [torch.nan, torch.inf, -torch.inf], ids=["nan", "inf", "-inf"])
def test_nan_and_inf_propagate_identically(backend, need_weights, kind, where, value):
    """A NaN/Inf in q (row 1), k or v (key 0, which every non-empty row sees) gives exactly
    the oracle's NaN pattern (plain IEEE softmax); only the row the mask leaves without keys
    is 0. Before, sdpa (and so auto) turned a NaN query row into zeros."""
    b, h, tq, tk, d = 2, 2, 5, 6, 4
    torch.manual_seed(1)
    q, k, v = (torch.randn(b, h, t, d) for t in (tq, tk, tk))
    {"q": q[:, :, 1], "k": k[:, :, 0], "v": v[:, :, 0]}[where][..., 0] = value
    m, allowed, bias = _nonfinite_mask(kind, b, h, tq, tk)
    exp, exp_w = ref.attention(q, k, v, allowed=allowed, bias=bias)
    out, w = attention(q, k, v, mask=m, need_weights=need_weights, backend=backend)
    assert not torch.isfinite(exp).all(), "the case must propagate something"
    for pattern in (torch.isnan, torch.isposinf, torch.isneginf):
        assert torch.equal(pattern(out), pattern(exp)), (backend, pattern.__name__)
    assert (out[0, :, -1] == 0).all(), "a row with no allowed key is 0 even with NaN inputs"
    ok = torch.isfinite(exp)
    torch.testing.assert_close(out[ok].double(), exp[ok], rtol=1e-5, atol=1e-5)
    if need_weights:
        assert torch.equal(torch.isnan(w), torch.isnan(exp_w))
        assert (w[0, :, -1] == 0).all()


@pytest.mark.parametrize("backend", ["math", "sdpa", "blockwise", "blockwise_small"])
def test_nan_inputs_at_scale_without_mask(backend):
    """Long sequences take torch's fused kernels (no mask, is_causal): a NaN query row and
    a key whose -inf scores leave the first causal row nothing are NaN there too."""
    b, h, t, d = 1, 2, 130, 8
    q, k, v = (torch.randn(b, h, t, d) for _ in range(3))
    q[0, 1, 70, 3] = torch.nan
    k[0, 0, 0] = torch.inf * torch.sign(q[0, 0, 0]).neg()  # score(q0, k0) = -inf
    for mask in (None, masks.causal()):
        out, _ = attention(q, k, v, mask=mask, backend=backend)
        assert torch.isnan(out[0, 1, 70]).all()
        if mask is not None:
            assert torch.isnan(out[0, 0, 0]).all()  # its only key scores -inf: 0 / 0
        rows = torch.isnan(out).any(dim=-1)
        exp, _ = ref.attention(
            q, k, v, allowed=None if mask is None else ref.allowed_matrix(b, t, t, causal=True)
        )
        assert torch.equal(rows, torch.isnan(exp).any(dim=-1))


@pytest.mark.parametrize("backend", ["math", "sdpa", "blockwise"])
def test_bf16_float_mask_plus_head_bias_within_twice_torch_error(backend):
    """Several float parts are summed in float32 and rounded to bf16 once (found by the fuzz
    suite: sdpa summed them in bf16, rounding twice, and lost to torch's own error)."""
    gen = torch.Generator().manual_seed(0)
    b, h, tq, tk = 2, 4, 9, 23
    q, k, v = (torch.randn(b, h, t, 16, generator=gen).bfloat16() for t in (tq, tk, tk))
    slopes = torch.tensor([9.5, 7.75, 5.3, 3.1], dtype=torch.float64)
    qp = torch.arange(tk - tq, tk, dtype=torch.float64)
    kp = torch.arange(tk, dtype=torch.float64)
    head_bias = -slopes.view(1, -1, 1, 1) * (qp.view(-1, 1) - kp.view(1, -1)).abs()
    # A dense part that nearly cancels the head bias: large parts, a small sum.
    extra = (torch.randn(1, h, tq, tk, generator=gen, dtype=torch.float64) - head_bias).bfloat16()
    m = masks.causal(align="bottom_right") & masks.dense(extra) & masks.bias(_DistanceBias(slopes))
    bias = extra.double() + head_bias
    allowed = ref.allowed_matrix(b, tq, tk, causal=True, align="bottom_right")
    exp, _ = ref.attention(q, k, v, allowed=allowed, bias=bias)
    own = ref.sdpa_at_dtype(q, k, v, allowed=allowed, bias=bias)
    out, _ = attention(q, k, v, mask=m, backend=backend)
    assert ref.max_err(out, exp) <= ref.tolerance(ref.max_err(own, exp))
