"""Forward FLOPs of a model, to predict what pruning heads should save.

Legend: T sequence length, E model width, Hq / Hkv a layer's query / KV heads, D head dim,
P attended (query, key) pairs.

A multiply-add counts 2 FLOPs. Per attention layer and sequence of T tokens:

- projections ``2 T E (Hq + 2 Hkv) D`` (q, k, v) and ``2 T Hq D E`` (output);
- scores ``2 P Hq D`` and the weighted sum of values ``2 P Hq D``, where ``P`` counts the pairs
  a query may attend: ``T^2`` without a mask, ``T (T + 1) / 2`` causal, ``sum_i min(i + 1, W)``
  with a sliding window W. (A backend that computes masked blocks anyway does more work; the
  count is what the model needs, so measured speed-ups are compared against it.)

:func:`forward_flops` adds ``2 T n`` for every other ``nn.Linear`` with n weights (the
feed-forward, a language-model head, tied or not) and ignores norms, activations, softmax and
embedding lookups (O(T E), small beside the matmuls).

Example:
    >>> from multihead.models import DecoderConfig, DecoderLM
    >>> model = DecoderLM(DecoderConfig(vocab_size=16, d_model=32, num_layers=2, num_heads=4))
    >>> attention_flops(model, 8)  # 2 layers x (2*8*32*96 + 2*8*32*32 + 4*36*4*8)
    140288
    >>> forward_flops(model, 8) - attention_flops(model, 8)   # 2*8*(2 layers*2*32*128 + 16*32)
    270336
"""

from __future__ import annotations

from torch import nn

from multihead import _checks
from multihead.analysis.layers import attention_layers


def attended_pairs(t: int, *, causal: bool, window: int | None = None) -> int:
    """Number of (query, key) pairs a length-``t`` sequence attends.

    Example:
        >>> attended_pairs(4, causal=False), attended_pairs(4, causal=True)
        (16, 10)
        >>> attended_pairs(4, causal=True, window=2)     # 1 + 2 + 2 + 2
        7
        >>> attended_pairs(4, causal=False, window=2)    # 2 + 3 + 3 + 2
        10
    """
    _checks.require_int("t", t, minimum=0)
    if not causal:
        if window is None:
            return t * t
        # two-sided: keys at distance < W
        return sum(min(t - 1, i + window - 1) - max(0, i - window + 1) + 1 for i in range(t))
    if window is None or window >= t:
        return t * (t + 1) // 2
    return window * (window + 1) // 2 + (t - window) * window


def _mask_of(model: nn.Module, causal: bool | None) -> tuple[bool, int | None]:
    config = getattr(model, "config", None)
    window = getattr(config, "window", None)
    if causal is None:
        causal = getattr(config, "kind", None) == "decoder_lm"
    return causal, window


def attention_flops(model: nn.Module, t: int, *, causal: bool | None = None) -> int:
    """FLOPs of every attention layer of ``model`` for one forward of one sequence of ``t``
    tokens (see the module doc). ``causal`` defaults to True for a DecoderLM (its
    ``config.window`` is used too) and False for anything else."""
    _checks.require_int("t", t, minimum=1)
    causal, window = _mask_of(model, causal)
    pairs = attended_pairs(t, causal=causal, window=window)
    total = 0
    for _, m in attention_layers(model):
        hq, hkv, d = m.num_heads, m.num_kv_heads, m.head_dim
        total += 2 * t * (m.embed_dim * hq + m.kdim * hkv + m.vdim * hkv) * d  # q, k, v
        total += 2 * t * hq * d * m.embed_dim  # output projection
        total += 4 * pairs * hq * d  # scores and weighted values
    return total


def forward_flops(model: nn.Module, t: int, *, causal: bool | None = None) -> int:
    """FLOPs of one forward of one sequence of ``t`` tokens: :func:`attention_flops` plus
    ``2 t n`` for each other ``nn.Linear`` of n weights."""
    inside = {id(sub) for _, m in attention_layers(model) for sub in m.modules() if sub is not m}
    others = sum(
        m.weight.numel()
        for m in model.modules()
        if isinstance(m, nn.Linear) and id(m) not in inside
    )
    return attention_flops(model, t, causal=causal) + 2 * t * others
