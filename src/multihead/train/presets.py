"""Named starting points for :func:`multihead.train.train` (``multihead train --preset``)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from multihead.models import DecoderConfig
from multihead.train.config import TrainConfig

PRESETS = ("tiny", "small")


def preset(name: str) -> tuple[DecoderConfig, TrainConfig]:
    """Named starting points; every field can be overridden (``multihead train --help``).

    - ``tiny``: seconds on a CPU (a smoke test of the whole pipeline).
    - ``small``: five minutes (``time_limit``) on a CPU; a byte-level model of Python source,
      with bf16 autocast where the machine runs it natively (:func:`fast_bf16`).

    Example:
        >>> model, train = preset("tiny")
        >>> model.d_model, train.steps
        (64, 200)
    """
    if name == "tiny":
        return _tiny()
    if name == "small":
        return _small()
    raise ValueError(f"preset must be one of {PRESETS}, got {name!r}")


@functools.cache
def fast_bf16() -> bool:
    """Does bfloat16 autocast speed training up here? On CUDA, and on CPUs with native
    bfloat16 instructions (AVX512-BF16 or AMX, read from /proc/cpuinfo). Other CPUs emulate
    it: on this project's AMD EPYC (AVX2 only) a small-preset step took 16 s under bf16
    autocast and 1.1 s in float32."""
    if torch.cuda.is_available():
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return not {"avx512_bf16", "amx_bf16"}.isdisjoint(flags.split())


def _tiny() -> tuple[DecoderConfig, TrainConfig]:
    return (
        DecoderConfig(
            vocab_size=256,
            max_seq_len=64,
            d_model=64,
            num_layers=2,
            num_heads=4,
            position="learned",
        ),
        TrainConfig(
            steps=200,
            batch_size=16,
            seq_len=64,
            lr=3e-3,
            min_lr=3e-4,
            warmup_steps=20,
            eval_every=100,
            eval_tokens=8192,
            log_every=10,
        ),
    )


def _small() -> tuple[DecoderConfig, TrainConfig]:
    # Sized for a 5-minute CPU budget (``time_limit``; the schedule decays over that time):
    # ~1,000 steps of 16 x 256 bytes at ~13k tokens/s with bf16 autocast on 2 cores.
    # Chosen by 5-minute runs scored on all validation bytes (benchmarks/RESULTS.md):
    # RoPE, d_model 192 and 6 heads beat learned positions, 128/160/256 wide and 3 or 12
    # heads; the math backend with Muon on the block matrices took the AdamW run from 2.04
    # bits per byte to 1.70, a linear decay to 0 to 1.68, and lr 5e-3 / 8e-3 / 1.3e-2 to
    # 1.54 / 1.46 / 1.39 (2e-2: 1.68).
    # The math backend trains it 1.17x faster than SDPA under bf16 (benchmarks/models.py).
    # bf16 autocast only where it is fast (fast_bf16): emulated, it made steps 14x slower.
    return (
        DecoderConfig(
            vocab_size=256,
            max_seq_len=256,
            d_model=192,
            num_layers=4,
            num_heads=6,
            position="rope",
            backend="math",
        ),
        TrainConfig(
            steps=5000,
            batch_size=16,
            seq_len=256,
            optimizer="muon",
            schedule="linear",
            lr=1e-2,
            min_lr=0.0,
            warmup_steps=50,
            eval_every=100,
            eval_tokens=32768,
            log_every=10,
            save_every=200,
            bf16=fast_bf16(),
            time_limit=300.0,
        ),
    )
