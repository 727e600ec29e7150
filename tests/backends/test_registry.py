"""Every registered backend: gradcheck in float64, GQA without K/V copies, registry errors."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from multihead import masks
from multihead.backends import available_backends, get_backend, register_backend
from multihead.functional import attention

BUILTIN = ["math", "sdpa", "blockwise"]


def test_builtin_backends_registered():
    assert set(BUILTIN) <= set(available_backends())
    with pytest.raises(ValueError, match="'auto' is reserved"):
        register_backend(get_backend("math").__class__("auto", print, lambda r: None))


MASKS = {
    "none": lambda: None,
    "causal": lambda: masks.causal(),
    "window_padding": lambda: masks.sliding_window(3) & masks.key_padding(lengths=[6, 2]),
    "empty_rows": lambda: masks.dense(
        torch.tensor([[True] * 6] * 3 + [[False] * 6] + [[True] * 6] * 2)
    ),
    "float_bias": lambda: masks.dense(torch.linspace(-1, 1, 36, dtype=torch.float64).view(6, 6)),
}


@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("backend", BUILTIN)
def test_gradcheck(backend, mask):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 6, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    k = torch.randn(2, 2, 6, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    v = torch.randn(2, 2, 6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    m = MASKS[mask]()

    def fn(q, k, v):
        kwargs = {"block_q": 2, "block_k": 4} if backend == "blockwise" else {}
        if kwargs:
            out, _ = get_backend("blockwise").forward(
                q,
                k,
                v,
                mask=masks.as_mask(m),
                scale=0.5,
                dropout_p=0.0,
                need_weights=False,
                **kwargs,
            )
            return out
        return attention(q, k, v, mask=m, scale=0.5, backend=backend)[0]

    assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("backend", BUILTIN)
def test_gradcheck_head_mask_and_weights(backend):
    gen = torch.Generator().manual_seed(1)
    q, k, v = (
        torch.randn(1, 3, 4, 2, dtype=torch.float64, generator=gen, requires_grad=True)
        for _ in range(3)
    )
    hm = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64, requires_grad=True)

    def fn(q, k, v, hm):
        out, w = attention(
            q, k, v, mask=masks.causal(), head_mask=hm, need_weights=True, backend=backend
        )
        return out, w

    assert torch.autograd.gradcheck(fn, (q, k, v, hm), eps=1e-6, atol=1e-8)


class _Shapes(TorchDispatchMode):
    """Records the shape of every tensor an aten op returns."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(o, torch.Tensor):
                self.shapes.append((str(func), tuple(o.shape)))
        return out


@pytest.mark.parametrize("backend", BUILTIN)
def test_gqa_never_copies_kv_per_query_head(backend):
    b, hq, hkv, tq, tk, d = 1, 8, 2, 32, 64, 16
    q = torch.randn(b, hq, tq, d, requires_grad=True)
    k = torch.randn(b, hkv, tk, d, requires_grad=True)
    v = torch.randn(b, hkv, tk, d, requires_grad=True)
    with _Shapes() as rec:
        out, _ = attention(q, k, v, mask=masks.causal(align="bottom_right"), backend=backend)
        out.sum().backward()
    expanded = [op for op, s in rec.shapes if s == (b, hq, tk, d)]
    assert not expanded, f"K/V repeated per query head by {expanded}"
    assert k.grad.shape == (b, hkv, tk, d)
