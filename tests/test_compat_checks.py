"""compat.MultiheadAttention's bad-input errors against torch.nn.MultiheadAttention's: every case
is run through both modules, and ours must be a ValueError/TypeError with our message that is
also an instance of the exception torch raised, in training and on torch's inference fast path
(eval + no grad), batch_first False and True, batched and unbatched, with and without weights.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from multihead.compat import MultiheadAttention

E, H, L, S, N = 16, 4, 5, 7, 3
BOOL = torch.bool


@dataclass(frozen=True)
class Ctx:
    """The layout a case builds its inputs for."""

    batch_first: bool
    batched: bool

    def x(self, t: int = L, d: int = E, n: int = N, dtype: torch.dtype = torch.float32):
        """A random input of length t and width d in this layout."""
        shape = ((n, t, d) if self.batch_first else (t, n, d)) if self.batched else (t, d)
        return torch.randn(*shape).to(dtype)

    def kpm(self, s: int = L, n: int = N, dtype: torch.dtype = BOOL):
        """A key_padding_mask (nothing padded) for s keys."""
        return torch.zeros((n, s) if self.batched else (s,), dtype=dtype)


def _same(x, **kwargs):
    """Self-attention: one tensor as query, key and value (what torch's fast path needs)."""
    return (x, x, x), kwargs


def _retyped(name: str, dtype: torch.dtype):
    """A module edit giving parameter ``name`` another dtype."""

    def prepare(module: nn.Module) -> None:
        owner, _, attr = name.rpartition(".")
        target = module.get_submodule(owner) if owner else module
        setattr(target, attr, nn.Parameter(getattr(target, attr).detach().to(dtype)))

    return prepare


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Ctx], tuple[tuple, dict]]
    pattern: str  # our message
    batched: tuple[bool, ...] = (True, False)
    ctor: dict = field(default_factory=dict)
    prepare: Callable[[nn.Module], None] | None = None
    # torch's inference fast path takes this input (its general path refuses it); we refuse it
    # on every path.
    fast_path_lenient: bool = False


def _cross(c: Ctx, k=None, v=None, q=None, **kwargs):
    q = c.x() if q is None else q
    k = c.x(S) if k is None else k
    return (q, k, k if v is None else v), kwargs


CASES = [
    # ranks (AssertionError in torch; IndexError where batch_first transposes a 1-D key)
    Case("query 1-D", lambda c: _same(torch.randn(E)), r"query has shape \(16,\) \(1-D\)", (True,)),
    Case("query 4-D", lambda c: _same(c.x()[None]), r"\(4-D\) but 3-D", (True,)),
    Case(
        "key rank",
        lambda c: _cross(c, k=torch.randn(S, E) if c.batched else torch.randn(S, N, E)),
        "key has shape .* but query is [23]-D",
    ),
    Case(
        "value rank",
        lambda c: _cross(c, v=torch.randn(S, E) if c.batched else torch.randn(S, N, E)),
        "value has shape .* but query is [23]-D",
    ),
    Case("key 1-D", lambda c: _cross(c, k=torch.randn(E)), r"key has shape \(16,\)", (True,)),
    Case(
        "key_padding_mask rank",
        lambda c: _same(
            c.x(), key_padding_mask=torch.zeros((L,) if c.batched else (1, L), dtype=BOOL)
        ),
        "key_padding_mask has shape",
    ),
    Case(
        "attn_mask 1-D",
        lambda c: _same(c.x(), attn_mask=torch.zeros(L, dtype=BOOL)),
        r"attn_mask has shape \(5,\) but \(L, S\) or",
    ),
    Case(
        "attn_mask 4-D",
        lambda c: _same(c.x(), attn_mask=torch.zeros(1, 1, L, L, dtype=BOOL)),
        r"attn_mask has shape \(1, 1, 5, 5\) but \(L, S\) or",
        fast_path_lenient=True,
    ),
    Case(
        "unbatched 3-D attn_mask shape",
        lambda c: _same(c.x(), attn_mask=torch.zeros(H + 1, L, L, dtype=BOOL)),
        r"must be \(num_heads, L, S\) = \(4, 5, 5\)",
        (False,),
    ),
    # mask dtypes (AssertionError)
    Case(
        "int key_padding_mask",
        lambda c: _same(c.x(), key_padding_mask=c.kpm(dtype=torch.int64)),
        "key_padding_mask has dtype torch.int64; expected bool",
    ),
    Case(
        "int attn_mask",
        lambda c: _same(c.x(), attn_mask=torch.zeros(L, L, dtype=torch.int64)),
        "attn_mask has dtype torch.int64; expected bool",
    ),
    # is_causal (RuntimeError; torch's fast path silently ignores the hint)
    Case(
        "is_causal without attn_mask",
        lambda c: _same(c.x(), is_causal=True),
        "is_causal=True is a hint .* needs attn_mask",
        fast_path_lenient=True,
    ),
    Case(
        "is_causal, key_padding_mask width",
        lambda c: _same(
            c.x(),
            attn_mask=torch.ones(L, L, dtype=BOOL).triu(1),
            is_causal=True,
            key_padding_mask=c.kpm(L + 1),
        ),
        "key_padding_mask has shape",
    ),
    # widths (AssertionError; RuntimeError where torch's packed projection fails)
    Case("query width", lambda c: _same(c.x(d=8)), r"last dim must be embed_dim=16"),
    Case(
        "key width, packed",
        lambda c: _cross(c, k=c.x(S, 8)),
        r"key has shape .* embed_dim=16 \(kdim = vdim = embed_dim\)",
    ),
    Case(
        "key width differs from value, packed",
        lambda c: _cross(c, k=c.x(S, 8), v=c.x(S)),
        "key has shape .* and value .*; they must match",
    ),
    Case(
        "key and value lengths",
        lambda c: _cross(c, k=c.x(S), v=c.x(S + 1)),
        "key has shape .* and value .*; they must match",
    ),
    Case(
        "key and value batch sizes",
        lambda c: _cross(c, k=c.x(S), v=c.x(S, n=N + 1)),
        "key has shape .* and value .*; they must match",
        (True,),
    ),
    Case(
        "kdim width",
        lambda c: _cross(c, k=c.x(S, 7), v=c.x(S, 10)),
        "key has shape .* last dim must be kdim=6",
        ctor={"kdim": 6, "vdim": 10},
    ),
    Case(
        "vdim width",
        lambda c: _cross(c, k=c.x(S, 6), v=c.x(S, 7)),
        "value has shape .* last dim must be vdim=10",
        ctor={"kdim": 6, "vdim": 10},
    ),
    Case(
        "kdim/vdim lengths",
        lambda c: _cross(c, k=c.x(S, 6), v=c.x(S + 1, 10)),
        "their sequence and batch dims must match",
        ctor={"kdim": 6, "vdim": 10},
    ),
    # sizes: attn_mask shape and batch sizes (RuntimeError), key_padding_mask (AssertionError)
    Case(
        "batch sizes",
        lambda c: _cross(c, k=c.x(S, n=2)),
        r"batch sizes differ \(3 vs 2\)",
        (True,),
    ),
    Case(
        "batch sizes, L == S",
        lambda c: _cross(c, k=c.x(L, n=2)),
        r"batch sizes differ \(3 vs 2\)",
        (True,),
    ),
    Case(
        "batch sizes, add_bias_kv",
        lambda c: _cross(c, k=c.x(S, n=2)),
        "batch sizes differ",
        (True,),
        ctor={"add_bias_kv": True},
    ),
    Case(
        "key_padding_mask width",
        lambda c: _same(c.x(), key_padding_mask=c.kpm(L + 1)),
        r"key_padding_mask has shape .* but \((N, )?S,?\) = .* is expected",
    ),
    Case(
        "key_padding_mask batch",
        lambda c: _same(c.x(), key_padding_mask=c.kpm(n=N + 1)),
        r"key_padding_mask has shape \(4, 5\) but \(N, S\) = \(3, 5\)",
        (True,),
    ),
    Case(
        "key_padding_mask width, add_zero_attn",
        lambda c: _same(c.x(), key_padding_mask=c.kpm(L + 1)),
        "key_padding_mask has shape",
        ctor={"add_zero_attn": True, "add_bias_kv": True},
    ),
    Case(
        "2-D attn_mask shape",
        lambda c: _same(c.x(), attn_mask=torch.zeros(L + 1, L, dtype=BOOL)),
        r"a 2-D attn_mask must be \(L, S\) = \(5, 5\)",
    ),
    Case(
        "3-D attn_mask shape",
        lambda c: _same(c.x(), attn_mask=torch.zeros(N, L, L, dtype=BOOL)),
        r"\(N \* num_heads, L, S\) = \(12, 5, 5\)",
        (True,),
    ),
    # dtypes and devices (RuntimeError)
    Case(
        "float64 query",
        lambda c: _same(c.x(dtype=torch.float64)),
        "query has dtype torch.float64 but in_proj_weight has dtype torch.float32",
    ),
    Case("float64 key", lambda c: _cross(c, k=c.x(S, dtype=torch.float64)), "key has dtype"),
    Case("float64 value", lambda c: _cross(c, v=c.x(S, dtype=torch.float64)), "value has dtype"),
    Case("int query", lambda c: _same(c.x(dtype=torch.int64)), "query has dtype torch.int64"),
    Case(
        "float64 attn_mask",
        lambda c: _same(c.x(), attn_mask=torch.zeros(L, L, dtype=torch.float64)),
        "attn_mask has dtype torch.float64 but query has dtype torch.float32",
    ),
    Case(
        "float16 attn_mask",
        lambda c: _same(c.x(), attn_mask=torch.zeros(L, L, dtype=torch.float16)),
        "attn_mask has dtype torch.float16",
    ),
    Case(
        "float64 key_padding_mask",
        lambda c: _same(c.x(), key_padding_mask=c.kpm(dtype=torch.float64)),
        "key_padding_mask has dtype torch.float64 but query",
    ),
    Case("query on meta", lambda c: _same(c.x().to("meta")), "query is on device meta"),
    Case(
        "float64 out_proj.weight",
        lambda c: _same(c.x()),
        "out_proj.weight has dtype torch.float64",
        prepare=_retyped("out_proj.weight", torch.float64),
    ),
    Case(
        "float64 out_proj.bias",
        lambda c: _same(c.x()),
        "out_proj.bias has dtype torch.float64",
        prepare=_retyped("out_proj.bias", torch.float64),
    ),
    Case(
        "float64 bias_k",
        lambda c: _same(c.x()),
        "bias_k has dtype torch.float64",
        ctor={"add_bias_kv": True},
        prepare=_retyped("bias_k", torch.float64),
    ),
    Case(
        "float64 k_proj_weight",
        lambda c: _cross(c, k=c.x(S, 6), v=c.x(S, 10)),
        "key has dtype torch.float32 but k_proj_weight has dtype torch.float64",
        ctor={"kdim": 6, "vdim": 10},
        prepare=_retyped("k_proj_weight", torch.float64),
    ),
]

WEIGHTS = {
    "weights": {"need_weights": True},
    "per_head": {"need_weights": True, "average_attn_weights": False},
    "no_weights": {"need_weights": False},
}
GRID = [
    pytest.param(
        case, bf, batched, id=f"{case.name}-bf={bf}-{'batched' if batched else 'unbatched'}"
    )
    for case in CASES
    for bf in (False, True)
    for batched in case.batched
]


def _raised(module: nn.Module, args: tuple, kwargs: dict, mode: str) -> Exception | None:
    module.train(mode == "train")
    try:
        with torch.set_grad_enabled(mode == "train"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's mixed-mask-type deprecation
            module(*args, **kwargs)
    except Exception as e:  # the type is what is compared
        return e
    return None


def _modules(batch_first: bool, ctor: dict, prepare) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(E, H, batch_first=batch_first, **ctor)
    torch.manual_seed(0)
    ours = MultiheadAttention(E, H, batch_first=batch_first, **ctor)
    if prepare is not None:
        prepare(theirs)
        prepare(ours)
    return theirs, ours


@pytest.mark.parametrize("weights", list(WEIGHTS))
@pytest.mark.parametrize("mode", ["train", "infer"])
@pytest.mark.parametrize(("case", "batch_first", "batched"), GRID)
def test_error_is_an_instance_of_torchs(case, batch_first, batched, mode, weights):
    theirs, ours = _modules(batch_first, case.ctor, case.prepare)
    args, kwargs = case.build(Ctx(batch_first, batched))
    kwargs = {**WEIGHTS[weights], **kwargs}
    theirs_error = _raised(theirs, args, kwargs, mode)
    ours_error = _raised(ours, args, kwargs, mode)
    assert isinstance(ours_error, (ValueError, TypeError)), ours_error
    assert re.search(case.pattern, str(ours_error)), str(ours_error)
    if theirs_error is None:
        assert case.fast_path_lenient and mode == "infer" and batch_first and batched
    else:
        assert isinstance(ours_error, type(theirs_error)), (theirs_error, ours_error)


CONSTRUCTION = [
    ((10, 4), {}, "embed_dim=10 is not divisible by num_heads=4"),
    ((4, 8), {}, "embed_dim=4 is not divisible by num_heads=8"),
    ((0, 4), {}, "embed_dim must be a positive integer, got 0"),
    ((-16, 4), {}, "embed_dim must be a positive integer"),
    ((16, 0), {}, "num_heads must be a positive integer, got 0"),
    ((16.0, 4), {}, "embed_dim must be an int, got float"),
    ((True, 1), {}, "embed_dim must be an int, got bool"),
    ((16, 4), {"kdim": -1}, "kdim must be >= 0, got -1"),
    ((16, 4), {"vdim": 2.0}, "vdim must be an int or None, got float"),
]


@pytest.mark.parametrize(("args", "kwargs", "pattern"), CONSTRUCTION)
def test_construction_error_is_an_instance_of_torchs(args, kwargs, pattern):
    with pytest.raises(Exception) as theirs:  # the type is what is compared
        nn.MultiheadAttention(*args, **kwargs)
    with pytest.raises((ValueError, TypeError), match=pattern) as ours:
        MultiheadAttention(*args, **kwargs)
    assert isinstance(ours.value, type(theirs.value)), (theirs.value, ours.value)


def test_is_causal_hint_ignores_attn_mask_where_torch_does():
    # Without key_padding_mask and weights torch trusts the hint and never reads attn_mask,
    # so a wrongly shaped one passes; with weights it is read and refused.
    theirs, ours = _modules(False, {}, None)
    x = torch.randn(L, N, E)
    bad = torch.zeros(L + 1, L, dtype=BOOL)
    out_t, _ = theirs(x, x, x, attn_mask=bad, is_causal=True, need_weights=False)
    out_o, _ = ours(x, x, x, attn_mask=bad, is_causal=True, need_weights=False)
    assert (out_t - out_o).abs().max() <= 1e-5
    with pytest.raises(RuntimeError):
        theirs(x, x, x, attn_mask=bad, is_causal=True)
    with pytest.raises(RuntimeError, match="a 2-D attn_mask must be"):
        ours(x, x, x, attn_mask=bad, is_causal=True)


def _message(module: nn.Module, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as err:
        module(*args, **kwargs)
    return str(err.value)


@pytest.mark.parametrize("batch_first", [False, True])
def test_equal_lengths_report_the_real_mismatch(batch_first):
    # With L == S the batch dims of query and key agree in the other layout too, so that
    # alone must not be read as a layout mistake.
    _, ours = _modules(batch_first, {}, None)
    c = Ctx(batch_first, True)
    x = c.x()
    msg = _message(ours, x, x, x, key_padding_mask=c.kpm(L + 1))
    assert f"but (N, S) = ({N}, {L}) is expected" in msg and "look like" not in msg
    y = c.x(L, n=2)
    msg = _message(ours, x, y, y)
    assert f"batch sizes differ ({N} vs 2)" in msg and "look like" not in msg
    layout = "(N, L, E)" if batch_first else "(L, N, E)"
    assert f"batch_first={batch_first} reads them as {layout}" in msg


@pytest.mark.parametrize("batch_first", [False, True])
def test_layout_hint_when_a_mask_fits_the_other_layout(batch_first):
    _, ours = _modules(batch_first, {}, None)
    here, other = ("(N, L, E)", "(L, N, E)") if batch_first else ("(L, N, E)", "(N, L, E)")
    hint = f"these look like {other} inputs, but batch_first={batch_first} expects {here}"
    swapped = Ctx(not batch_first, True)  # inputs laid out for the other setting
    x = swapped.x()
    # A key_padding_mask (N, L) built for the other layout.
    assert hint in _message(ours, x, x, x, key_padding_mask=swapped.kpm())
    # Cross-attention, L != S: batch sizes differ here, and the mask fits the other layout.
    k = swapped.x(S)
    assert hint in _message(ours, x, k, k, key_padding_mask=swapped.kpm(S))
    # A 2-D attn_mask (L, S) with L, S != N.
    assert hint in _message(ours, x, k, k, attn_mask=torch.zeros(L, S, dtype=BOOL))
    # A mask that fits neither layout gives no hint.
    msg = _message(ours, x, k, k, key_padding_mask=swapped.kpm(S + 1))
    assert "look like" not in msg


def _nt(lengths=(3, 5), width=E, dtype=torch.float32):
    return torch.nested.nested_tensor([torch.randn(n, width, dtype=dtype) for n in lengths])


NESTED_CASES = [
    # (name, batch_first, build() -> (args, kwargs), our message, torch's fast path takes it)
    (
        "batch_first=False",
        False,
        lambda: _same(_nt()),
        "construct the module with batch_first",
        False,
    ),
    (
        "key_padding_mask",
        True,
        lambda: _same(_nt(), key_padding_mask=torch.zeros(2, 5, dtype=BOOL)),
        "not supported with nested tensors",
        False,
    ),
    (
        "attn_mask",
        True,
        lambda: _same(_nt(), attn_mask=torch.zeros(5, 5, dtype=BOOL)),
        "not supported with nested",
        False,
    ),
    ("is_causal", True, lambda: _same(_nt(), is_causal=True), "not supported with nested", True),
    (
        "dense key and value",
        True,
        lambda: ((_nt(), torch.randn(2, 5, E), torch.randn(2, 5, E)), {}),
        "key, value are not nested",
        False,
    ),
    ("no sequences", True, lambda: _same(torch.nested.nested_tensor([])), "1-D nested", False),
    ("width", True, lambda: _same(_nt(width=8)), "last dim must be embed_dim=16", False),
    ("float64", True, lambda: _same(_nt(dtype=torch.float64)), "has dtype torch.float64", False),
]


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype")
@pytest.mark.parametrize("mode", ["train", "infer"])
@pytest.mark.parametrize(
    ("build", "batch_first", "pattern", "lenient"),
    [pytest.param(b, bf, p, le, id=n) for n, bf, b, p, le in NESTED_CASES],
)
def test_nested_error_is_an_instance_of_torchs(build, batch_first, pattern, lenient, mode):
    theirs, ours = _modules(batch_first, {}, None)
    args, kwargs = build()
    theirs_error = _raised(theirs, args, kwargs, mode)
    ours_error = _raised(ours, args, kwargs, mode)
    assert isinstance(ours_error, (ValueError, TypeError)), ours_error
    assert re.search(pattern, str(ours_error)), str(ours_error)
    if theirs_error is None:
        assert lenient and mode == "infer"
    else:
        assert isinstance(ours_error, type(theirs_error)), (theirs_error, ours_error)
