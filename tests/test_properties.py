"""Fuzzing as part of the suite: ``multihead.functional.attention`` on every backend against the
float64 oracle (tests/reference.py) over random shapes, GQA ratios, ``Tq != Tk``, head dims
1-80, float32/float64/bfloat16, need_weights, and random ``&``-combinations of every mask part
(fully masked rows included).

Tolerance (DESIGN.md, FlashAttention's rule): at most 2x the error of PyTorch's own
``F.scaled_dot_product_attention`` at the same dtype against the oracle, plus 1e-6.

``make test`` runs a bounded, derandomized number of examples; ``make fuzz`` sets
``MULTIHEAD_FUZZ=<examples>`` (at least 10,000) for a random search and reports the count.
"""

from __future__ import annotations

import math
import os
import time

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from multihead.backends import blockwise
from multihead.functional import attention
from tests import mask_parts
from tests import reference as ref

FUZZ = os.environ.get("MULTIHEAD_FUZZ")
EXAMPLES = int(FUZZ) if FUZZ else 200
BACKENDS = ("math", "sdpa", "blockwise", "auto")
DTYPES = (torch.float32, torch.float64, torch.bfloat16)
_COUNT = {"examples": 0, "calls": 0, "start": 0.0}


@pytest.fixture(scope="module", autouse=True)
def _one_thread_and_report(request):
    """One intra-op thread (tiny tensors: a second thread only adds contention), and the
    count of examples at the end."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    _COUNT["start"] = time.perf_counter()
    yield
    torch.set_num_threads(threads)
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None and _COUNT["examples"]:
        seconds = time.perf_counter() - _COUNT["start"]
        with capture.global_and_fixture_disabled():
            reporter.write_line(
                f"\nattention fuzz: {_COUNT['examples']} examples, {_COUNT['calls']} backend "
                f"calls checked against the float64 oracle in {seconds:.0f} s"
            )


@st.composite
def problems(draw):
    b = draw(st.integers(1, 3))
    hkv = draw(st.integers(1, 3))
    hq = hkv * draw(st.sampled_from([1, 1, 2, 3, 4]))  # GQA ratios, MHA most often
    long = draw(st.integers(0, 9)) == 0  # sometimes past the fused kernels' small-size paths
    tq = draw(st.integers(65, 160) if long else st.integers(1, 40))
    tk = draw(st.integers(65, 160) if long else st.integers(0, 40))
    d = draw(st.integers(1, 80))
    dv = draw(st.integers(1, 80))
    # bfloat16 matmuls are slow on CPUs without bf16 units: long cases stay in float32/64.
    dtype = draw(st.sampled_from(DTYPES[:2] if long else DTYPES))
    need_weights = draw(st.booleans())
    parts = draw(mask_parts.parts_for(b, tq, tk, max_parts=4))
    # Blockwise tiles to cross: down to single rows and keys, but not thousands of tiles.
    smallest = 1 if not long else 16
    blocks = (draw(st.integers(smallest, 48)), draw(st.integers(smallest, 48)))
    seed = draw(st.integers(0, 2**16))
    return b, hq, hkv, tq, tk, d, dv, dtype, need_weights, parts, blocks, seed


def _own_weights(q, k, allowed, bias):
    """PyTorch's softmax weights at the inputs' dtype, the reference for the weights' error."""
    groups = q.shape[1] // k.shape[1]
    kk = k.repeat_interleave(groups, dim=1)
    s = (q @ kk.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    s = (s + bias.to(q.dtype)).masked_fill(~allowed, -torch.inf)
    return torch.nan_to_num(torch.softmax(s, dim=-1), nan=0.0)


@settings(
    max_examples=EXAMPLES,
    derandomize=not FUZZ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(problem=problems())
# Regressions the fuzz found: float parts rounded once per part in reduced precision (a head
# bias and dense masks summed in bf16; two float32 head biases against exact ones).
@example(
    problem=(1, 1, 1, 1, 35, 2, 1, torch.bfloat16, False,
             ([("dense_float", 0), ("dense_float", 1), ("dense_float", 0)], None, 0), (1, 1), 1)
)  # fmt: skip
@example(
    problem=(1, 1, 1, 1, 6, 2, 1, torch.bfloat16, False,
             ([("causal", 0, "top_left"), ("dense_float", 0), ("bias", 0)], "1d", 1), (1, 1), 0)
)  # fmt: skip
@example(
    problem=(2, 4, 1, 158, 65, 72, 11, torch.float32, False,
             ([("bias", 225), ("bias", 755)], None, 0), (16, 16), 22)
)  # fmt: skip
def test_attention_fuzz_against_float64_oracle(problem):
    b, hq, hkv, tq, tk, d, dv, dtype, need_weights, parts, blocks, seed = problem
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, hq, tq, d, generator=gen, dtype=torch.float64).to(dtype)
    k = torch.randn(b, hkv, tk, d, generator=gen, dtype=torch.float64).to(dtype)
    v = torch.randn(b, hkv, tk, dv, generator=gen, dtype=torch.float64).to(dtype)
    m, allowed, bias = mask_parts.build(b, hq, tq, tk, *parts, dtype=dtype)
    exp, exp_w = ref.attention(q, k, v, allowed=allowed, bias=bias)
    # torch gives NaN for rows whose float mask is all -inf; those rows are exactly 0 here.
    own = torch.nan_to_num(ref.sdpa_at_dtype(q, k, v, allowed=allowed, bias=bias), nan=0.0)
    tol = ref.tolerance(ref.max_err(own, exp))
    tol_w = ref.tolerance(ref.max_err(_own_weights(q, k, allowed, bias), exp_w))
    grad = dtype == torch.float64
    for backend in BACKENDS:
        qq = q.clone().requires_grad_(grad)
        out, w = attention(qq, k, v, mask=m, need_weights=need_weights, backend=backend)
        assert out.dtype == dtype and out.shape == (b, hq, tq, dv), backend
        err = ref.max_err(out, exp)
        assert err <= tol, f"{backend}: output error {err:.3g} > {tol:.3g}"
        assert (out[~allowed.any(-1).expand(b, hq, tq) & ~(bias > -torch.inf).any(-1)] == 0).all()
        if need_weights:
            assert w.shape == (b, hq, tq, tk)
            err_w = ref.max_err(w, exp_w)
            assert err_w <= tol_w, f"{backend}: weights error {err_w:.3g} > {tol_w:.3g}"
        if grad:
            out.sum().backward()
            assert torch.isfinite(qq.grad).all(), f"{backend}: non-finite gradient"
        _COUNT["calls"] += 1
    # The blockwise backend with small tiles, so that the online softmax and the block plan
    # (skipped, fully visible and edge tiles) are crossed at every size.
    scale = 1.0 / math.sqrt(d)
    out, _ = blockwise.forward(
        q, k, v, mask=m, scale=scale, dropout_p=0.0, need_weights=False,
        block_q=blocks[0], block_k=blocks[1],
    )  # fmt: skip
    err = ref.max_err(out, exp)
    assert err <= tol, f"blockwise {blocks}: output error {err:.3g} > {tol:.3g}"
    _COUNT["calls"] += 1
    _COUNT["examples"] += 1
