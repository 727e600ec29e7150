"""Random masks made of every part, and the same parts rendered independently and combined
by hand: the test oracle for ``&`` (tests/test_masks.py) and for the attention fuzz suite
(tests/test_properties.py).

Each part is rendered from its definition (tests/reference.py's ``allowed_matrix`` for causal,
windows and key lengths; the tensors themselves for padding and dense parts; explicit loops for
per-head biases), never through ``AttentionMask``.
"""

from __future__ import annotations

import functools
import operator

import torch
from hypothesis import strategies as st

from multihead import masks
from tests import reference as ref

PART_KINDS = ("causal", "window", "lengths", "padding", "dense_bool", "dense_float", "bias")
DENSE_FORMS = ("2d", "3d", "4d_heads", "4d_keys")


class SlopeBias:
    """ALiBi-like per-head bias ``-slope[h] * |k_pos - q_pos|`` (a HeadBias)."""

    def __init__(self, slopes: torch.Tensor) -> None:
        self.slopes = slopes
        self.num_heads = slopes.numel()

    def __call__(self, q_pos, k_pos, dtype):
        dist = (k_pos.view(1, 1, 1, -1) - q_pos[:, None, :, None]).abs()  # (1|B, 1, tq, tk)
        return -self.slopes.to(dtype).view(1, -1, 1, 1) * dist.to(dtype)  # (1|B, H, tq, tk)


@st.composite
def parts_for(draw, b: int, tq: int, tk: int, max_parts: int = 5):
    """1..max_parts mask parts of any kind for these sizes, optional explicit query positions
    and a seed: ``(parts, qpos_kind, seed)``."""
    parts = []
    for kind in draw(st.lists(st.sampled_from(PART_KINDS), min_size=1, max_size=max_parts)):
        seed = draw(st.integers(0, 2**16))
        if kind == "causal":
            parts.append((kind, seed, draw(st.sampled_from(masks.ALIGNS))))
        elif kind == "window":
            w, c = draw(st.integers(1, 8)), draw(st.booleans())
            parts.append((kind, seed, w, c, draw(st.sampled_from(masks.ALIGNS))))
        elif kind == "lengths":
            parts.append((kind, seed, draw(st.lists(st.integers(0, tk), min_size=b, max_size=b))))
        elif kind == "dense_bool":
            parts.append((kind, seed, draw(st.sampled_from(DENSE_FORMS))))
        else:
            parts.append((kind, seed))
    return parts, draw(st.sampled_from([None, "1d", "2d"])), draw(st.integers(0, 2**16))


def _dense_shape(form, b, h, tq, tk):
    return {
        "2d": (tq, tk),
        "3d": (b, tq, tk),
        "4d_heads": (1, h, tq, tk),
        "4d_keys": (b, 1, 1, tk),
    }[form]


def build(b, h, tq, tk, parts, qpos_kind, seed, dtype=torch.float64):
    """The composed mask (dense float parts at ``dtype``), and the parts combined by hand:
    ``(mask, allowed (B, H, Tq, Tk) bool, bias (B, H, Tq, Tk) float64)``. Dense bool parts
    mask some whole query rows, so fully masked rows are common."""
    gen = torch.Generator().manual_seed(seed)
    qpos = None
    if qpos_kind is not None:
        qpos = torch.randint(0, tk + 3, (tq,) if qpos_kind == "1d" else (b, tq), generator=gen)
    allowed = torch.ones(b, h, tq, tk, dtype=torch.bool)
    bias = torch.zeros(b, h, tq, tk, dtype=torch.float64)
    built, slopes_list, first_align = [], [], None
    for part in parts:
        kind, g = part[0], torch.Generator().manual_seed(part[1])
        if kind in ("causal", "window"):
            if kind == "causal":
                c, w, align = True, None, part[2]
                built.append(masks.causal(align=align))
            else:
                _, _, w, c, align = part
                built.append(masks.sliding_window(w, causal=c, align=align))
            first_align = first_align or align
            allowed &= ref.allowed_matrix(
                b, tq, tk, causal=c, align=align, window=w, query_positions=qpos
            )
        elif kind == "lengths":
            built.append(masks.key_padding(lengths=torch.tensor(part[2])))
            allowed &= ref.allowed_matrix(b, tq, tk, key_lengths=part[2])
        elif kind == "padding":
            pad = torch.rand(b, tk, generator=g) > 0.3
            built.append(masks.key_padding(mask=pad))
            allowed &= pad[:, None, None, :]
        elif kind == "dense_bool":
            t = torch.rand(_dense_shape(part[2], b, h, tq, tk), generator=g) > 0.25
            if part[2] != "4d_keys":
                t[..., torch.rand(tq, generator=g) < 0.15, :] = False  # whole rows masked
            built.append(masks.dense(t))
            allowed &= t.view(b, 1, tq, tk) if t.dim() == 3 else t  # (B, Tq, Tk) -> 4-D
        elif kind == "dense_float":
            t = torch.randn(1, h, tq, tk, generator=g, dtype=torch.float64)
            t = t.masked_fill(torch.rand(1, h, tq, tk, generator=g) < 0.2, -torch.inf).to(dtype)
            built.append(masks.dense(t))
            bias = bias + t.double()
        else:
            slopes = torch.rand(h, generator=g, dtype=torch.float64)
            built.append(masks.bias(SlopeBias(slopes)))
            slopes_list.append(slopes)
    m = functools.reduce(operator.and_, built)
    if qpos is not None:
        m = m.with_query_positions(qpos)
    # Head biases read the positions of the leftmost positional part's alignment.
    if slopes_list:
        if qpos is not None:
            pos = qpos.expand(b, tq)  # (B, Tq)
        else:
            offset = tk - tq if first_align == "bottom_right" else 0
            pos = torch.tensor([[i + offset for i in range(tq)]] * b)  # (B, Tq)
        dist = (torch.arange(tk).view(1, 1, -1) - pos[:, :, None]).abs()  # (B, Tq, Tk)
        # Backends evaluate head biases at their compute dtype (float32 for half precision),
        # so the values at that dtype are the inputs, as q, k, v are at theirs.
        compute = torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype
        for slopes in slopes_list:
            part = -slopes.to(compute).view(1, -1, 1, 1) * dist[:, None].to(compute)
            bias = bias + part.double()  # (B, H, Tq, Tk)
    return m, allowed, bias
