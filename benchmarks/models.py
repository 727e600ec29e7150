"""Model benchmarks, measured in one process with interleaved runs and reported as medians.

1. Training tokens/s of DecoderLM against the same architecture built from
   ``torch.nn.TransformerEncoderLayer`` (pre-norm, GELU, learned positions, tied head) with a
   causal mask: forward + backward + AdamW step.
2. Training tokens/s of the small preset's model with bf16 autocast on the ``math`` attention
   backend against the ``sdpa`` backend (same weights; why the preset picks ``math``).
3. Decoding tokens/s at a 2k-token context with the KV cache against recomputing the whole
   prefix for every new token.

Usage::

    python benchmarks/models.py                   # prints a markdown section
    python benchmarks/models.py --output benchmarks/RESULTS.md   # also writes it there
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F

from multihead.models import DecoderConfig, DecoderLM
from multihead_apps.bench.results import write_section
from multihead_apps.bench.timing import Timings, shuffled_rounds


class TorchTwin(nn.Module):
    """DecoderLM's architecture from torch's own layers (the baseline a tutorial would build)."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_seq_len, cfg.d_model)
        layer = nn.TransformerEncoderLayer(
            cfg.d_model,
            cfg.num_heads,
            cfg.ffn_size,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        x = self.tok(tokens) + self.pos(torch.arange(t, device=tokens.device))  # (B, T, E)
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=tokens.device)
        x = self.layers(x, mask=mask, is_causal=True)
        return self.norm(x) @ self.tok.weight.T  # (B, T, V)


def train_step_time(model: nn.Module, opt, x: torch.Tensor, vocab: int) -> float:
    t0 = time.perf_counter()
    logits = model(x)  # (B, T, V)
    loss = F.cross_entropy(logits.float().reshape(-1, vocab), x.reshape(-1))
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def interleaved_step_times(
    opts: dict[str, tuple[nn.Module, torch.optim.Optimizer]],
    rounds: int,
    steps: int,
    batch: int,
    seq: int,
) -> Timings:
    """Seconds per training step of each (model, optimizer): one warm-up step each, then
    ``rounds`` rounds in a seeded random order each (the harness's order), in which each runs
    ``steps`` steps in turn (best of them)."""
    x = torch.randint(0, 256, (batch, seq))  # (B, T) byte tokens
    samples: dict[str, list[float]] = {k: [] for k in opts}
    for m, o in opts.values():
        train_step_time(m, o, x, 256)
    for order in shuffled_rounds(list(opts), rounds):
        for name in order:
            m, o = opts[name]
            samples[name].append(min(train_step_time(m, o, x, 256) for _ in range(steps)))
    return Timings(samples)


def speedup(t: Timings, fast: str, slow: str) -> tuple[float, tuple[float, float]]:
    """How many times faster ``fast`` is: the median over rounds of slow time / fast time in
    the same round, and the smallest and largest per-round value."""
    return t.ratio(slow, fast), t.ratio_range(slow, fast)


def bench_training(rounds: int, steps: int, batch: int, seq: int) -> dict:
    cfg = DecoderConfig(
        vocab_size=256,
        max_seq_len=seq,
        d_model=192,
        num_layers=4,
        num_heads=6,
        position="learned",
    )
    torch.manual_seed(0)
    ours = DecoderLM(cfg)
    theirs = TorchTwin(cfg)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_theirs = sum(p.numel() for p in theirs.parameters())
    opts = {
        "multihead": (ours, torch.optim.AdamW(ours.parameters(), lr=1e-4)),
        "torch": (theirs, torch.optim.AdamW(theirs.parameters(), lr=1e-4)),
    }
    t = interleaved_step_times(opts, rounds, steps, batch, seq)
    return {
        "config": f"d_model=192, 4 layers, 6 heads, T={seq}, B={batch}",
        "params": (n_ours, n_theirs),
        "tps": {k: batch * seq / t.median(k) for k in opts},
        "ratio": speedup(t, "multihead", "torch"),
    }


def bench_backends(rounds: int, steps: int, batch: int, seq: int) -> dict:
    """One model, two attention backends: bf16-autocast training steps, interleaved."""
    base = {"vocab_size": 256, "max_seq_len": seq, "d_model": 192, "num_layers": 4}
    base.update(num_heads=6, position="rope")
    torch.manual_seed(0)
    models = {b: DecoderLM(DecoderConfig(**base, backend=b)) for b in ("math", "sdpa")}
    models["sdpa"].load_state_dict(models["math"].state_dict())
    opts = {b: (m, torch.optim.AdamW(m.parameters(), lr=1e-4)) for b, m in models.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        t = interleaved_step_times(opts, rounds, steps, batch, seq)
    return {
        "config": f"d_model=192, 4 layers, 6 heads, RoPE, T={seq}, B={batch}, bf16 autocast",
        "tps": {k: batch * seq / t.median(k) for k in opts},
        "ratio": speedup(t, "math", "sdpa"),
    }


@torch.no_grad()
def bench_decode(rounds: int, context: int, new_tokens: int) -> dict:
    cfg = DecoderConfig(
        vocab_size=256,
        max_seq_len=context + new_tokens,
        d_model=192,
        num_layers=4,
        num_heads=6,
        position="rope",
    )
    torch.manual_seed(0)
    model = DecoderLM(cfg).eval()
    prompt = torch.randint(0, 256, (1, context))
    times: dict[str, list[float]] = {"cache": [], "recompute": []}

    def cached() -> float:
        cache = model.new_cache(1, context + new_tokens)
        logits = model(prompt, cache=cache)  # prefill, not timed
        tok = logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
        t0 = time.perf_counter()
        for _ in range(new_tokens):
            tok = model(tok, cache=cache)[:, -1].argmax(-1, keepdim=True)
        return (time.perf_counter() - t0) / new_tokens

    def recompute() -> float:
        seq = prompt
        t0 = time.perf_counter()
        for _ in range(new_tokens):
            tok = model(seq)[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat((seq, tok), dim=1)
        return (time.perf_counter() - t0) / new_tokens

    cached()
    calls = {"cache": cached, "recompute": recompute}
    for order in shuffled_rounds(list(calls), rounds):
        for name in order:
            times[name].append(calls[name]())
    t = Timings(times)
    return {
        "config": f"d_model=192, 4 layers, 6 heads, RoPE, context {context}, "
        f"{new_tokens} new tokens, batch 1",
        "tps": {k: 1.0 / t.median(k) for k in calls},
        "ratio": speedup(t, "cache", "recompute"),
    }


def fmt(ratio: tuple[float, tuple[float, float]], digits: int = 2) -> str:
    r, (lo, hi) = ratio
    return f"{r:.{digits}f}x ({lo:.{digits}f}-{hi:.{digits}f})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--output", default=None, help="write (replace) this section in this file")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tr = bench_training(args.rounds, steps=2, batch=16, seq=256)
    bk = bench_backends(args.rounds, steps=2, batch=16, seq=256)
    dec = bench_decode(args.rounds, context=2048, new_tokens=16)
    cmd = "python " + " ".join(["benchmarks/models.py", *sys.argv[1:]])
    lines = [
        f"### {torch.get_num_threads()} thread(s)",
        "",
        f"`{cmd}` — torch {torch.__version__}, {platform.machine()}, "
        f"{torch.get_num_threads()} threads, medians of {args.rounds} interleaved rounds (a "
        "seeded random order each round); ratio: the median over rounds of the per-round "
        "speed ratio, with its smallest and largest per-round value.",
        "",
        "| benchmark | multihead | baseline | ratio (rounds) |",
        "| --- | --- | --- | --- |",
        f"| training tok/s, DecoderLM vs nn.TransformerEncoderLayer twin ({tr['config']}) "
        f"| {tr['tps']['multihead']:,.0f} | {tr['tps']['torch']:,.0f} | {fmt(tr['ratio'])} |",
        f"| training tok/s, math vs sdpa attention backend ({bk['config']}) "
        f"| {bk['tps']['math']:,.0f} | {bk['tps']['sdpa']:,.0f} | {fmt(bk['ratio'])} |",
        f"| decode tok/s, KV cache vs recompute prefix ({dec['config']}) "
        f"| {dec['tps']['cache']:,.1f} | {dec['tps']['recompute']:,.1f} "
        f"| {fmt(dec['ratio'], 1)} |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.output:
        write_section(args.output, text, heading=lines[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
