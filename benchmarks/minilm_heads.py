"""The heads of a real model: all-MiniLM-L6-v2 (6 layers x 12 heads) on the project's English
sentences (issue 12, "Heads of a real model").

1. Positional and special-token heads (Clark et al. 2019, sec. 3): per head, the mean weight
   a real query puts on the previous token, the next token, itself, [CLS] and [SEP], over the
   score split.
2. Syntactic heads (Clark et al. 2019, sec. 4.2; :mod:`multihead.analysis.syntax`): each head
   scored per relation on the score split's annotated sentences; the best head there is then
   evaluated on the held-out split against the fixed-offset baseline fit on the score split.
3. Pruning on embedding fidelity (:mod:`multihead.analysis.fidelity`): heads ranked by
   Jacobian importance on score-split sentences, removed 6 at a time (the lowest first, never
   a layer's last head), one-shot (ranked once) or re-scored after every step; at each point
   the mean cosine to the unpruned embeddings on the held-out split (masking, which equals
   pruning numerically) and the measured forward speed-up of the physically pruned model
   against the unpruned one (interleaved rounds in this process).

Run: PYTHONPATH=src python benchmarks/minilm_heads.py --output benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import copy
import platform
import time

import torch

from multihead.analysis import analyze, prune_heads
from multihead.analysis.fidelity import (
    embedding_batches,
    jacobian_importance,
    mean_cosine,
    reference_embeddings,
)
from multihead.analysis.syntax import syntactic_heads, syntax_scores, with_syntactic_roles
from multihead.convert import minilm
from multihead.data import english
from multihead_apps.bench.results import write_section
from multihead_apps.bench.timing import interleave

HEADING = "## Heads of all-MiniLM-L6-v2"
SCORES = {
    "previous_token": "previous token",
    "next_token": "next token",
    "sink": "[CLS] (position 0)",
    "special_token": "[SEP]",
}


def head_report(model, tokenizer, sentences, batch_size=32):
    """The :func:`~multihead.analysis.analyze` report over ``sentences`` (padded batches,
    [SEP] as the special token, so ``sink`` is [CLS] = position 0 and ``special_token`` is
    [SEP])."""
    batches = []
    for start in range(0, len(sentences), batch_size):
        enc = tokenizer.encode(sentences[start : start + batch_size])
        batches.append({"tokens": enc.ids, "padding_mask": enc.attention_mask})
    return analyze(model, batches, special_tokens=[tokenizer.sep], progress=False)


def score_grid(report, name: str, layers: int, heads: int) -> torch.Tensor:
    """``(L, H)``: one score of every head of an unpruned model's report."""
    grid = torch.full((layers, heads), float("nan"))
    for h in report.heads:
        grid[h.layer, h.head] = h.scores.get(name, float("nan"))
    return grid


def lowest(importance: torch.Tensor, mask: torch.Tensor, k: int) -> list[tuple[int, int]]:
    """The ``k`` kept heads of lowest importance, never a layer's last kept head."""
    kept = mask.clone()
    out = []
    for flat in importance.masked_fill(mask == 0, float("inf")).flatten().argsort().tolist():
        layer, head = divmod(flat, mask.shape[1])
        if len(out) == k:
            break
        if kept[layer, head] and kept[layer].sum() > 1:
            kept[layer, head] = 0
            out.append((layer, head))
    return out


def pruning_curve(model, score_batches, steps, step_size, *, rescore, seed=0):
    """The head masks after 0, 1, ..., ``steps`` steps of ``step_size`` removals, and the
    seconds spent scoring."""
    mask = torch.ones(model.config.num_layers, model.config.num_heads)
    masks, spent = [mask.clone()], 0.0
    importance = None
    for _ in range(steps):
        if importance is None or rescore:
            t0 = time.perf_counter()
            importance = jacobian_importance(model, score_batches, head_mask=mask, seed=seed)
            spent += time.perf_counter() - t0
        for layer, head in lowest(importance, mask, step_size):
            mask[layer, head] = 0
        masks.append(mask.clone())
    return masks, spent


def physically_pruned(model, mask: torch.Tensor):
    """A copy of ``model`` without the heads where ``mask`` is 0 (:func:`prune_heads`)."""
    remove = {layer: (mask[layer] == 0).nonzero().flatten().tolist() for layer in range(len(mask))}
    return prune_heads(copy.deepcopy(model), {k: v for k, v in remove.items() if v})


@torch.no_grad()
def speedup(model, pruned, batch, rounds: int) -> tuple[float, float, float]:
    """Median over interleaved rounds of unpruned time / pruned time on one batch, and the
    smallest and largest per-round ratio."""
    ids, real = batch
    calls = {
        "full": lambda: model.hidden_states(ids, padding_mask=real),
        "pruned": lambda: pruned.hidden_states(ids, padding_mask=real),
    }
    t = interleave(calls, rounds=rounds, warmup=1)
    lo, hi = t.ratio_range("full", "pruned")
    return t.ratio("full", "pruned"), lo, hi


def long_input(tokenizer, sentences, length: int):
    """One ``(1, length)`` batch: the sentences joined into one text, truncated."""
    enc = tokenizer.encode([" ".join(sentences)], max_length=length)
    if enc.ids.shape[1] < length:
        raise ValueError(f"the sentences give only {enc.ids.shape[1]} tokens, not {length}")
    return enc.ids, enc.attention_mask  # (1, T), (1, T)


def flops_ratio(config, mask: torch.Tensor, t: int) -> float:
    """Unpruned / pruned forward FLOPs per token of the blocks at length ``t`` (projections
    4 E·H·D, attention 2 T·H·D, FFN 2 E·F, each x2 for multiply-add)."""
    e, d, f = config.d_model, config.head_size, config.ffn_dim

    def layer(h: float) -> float:
        return 2 * (4 * e * h * d + 2 * t * h * d + 2 * e * f)

    full = config.num_layers * layer(config.num_heads)
    return full / sum(layer(float(mask[i].sum())) for i in range(mask.shape[0]))


def top_heads(score: torch.Tensor, k: int = 3) -> str:
    flat = score.flatten().argsort(descending=True)[:k].tolist()
    cols = score.shape[1]
    return ", ".join(f"{f // cols}-{f % cols} ({float(score.flatten()[f]):.2f})" for f in flat)


def heads_over(score: torch.Tensor, threshold: float) -> str:
    ids = (score >= threshold).nonzero().tolist()
    return ", ".join(f"{a}-{b} ({float(score[a, b]):.2f})" for a, b in ids) or "none"


def positional_section(report, n_sentences: int) -> list[str]:
    lines = [
        f"### Positional and special-token heads (score split, {n_sentences} sentences)",
        "",
        "Scores from `multihead.analysis.analyze` (the share of a head's attention on the "
        'target, TransformerLens\'s "mul" score, over every real query); heads `layer-head`, '
        "from 0. Roles at >= 0.5.",
        "",
        "| target | heads with score >= 0.5 | top 3 | mean per layer 0..5 |",
        "| --- | --- | --- | --- |",
    ]
    for name, label in SCORES.items():
        s = score_grid(report, name, 6, 12)
        per_layer = " / ".join(f"{float(v):.2f}" for v in s.mean(dim=1))
        lines.append(f"| {label} | {heads_over(s, 0.5)} | {top_heads(s)} | {per_layer} |")
    return lines


def syntax_section(model, tok) -> list[str]:
    score = syntax_scores(model, tok, english.annotations("score"))
    offsets = {r: s.baseline_offset for r, s in score.items()}
    held = syntax_scores(model, tok, english.annotations("heldout"), baseline=offsets)
    lines = [
        "### Syntactic heads (Clark et al. 2019 scoring)",
        "",
        "Best head chosen on the score split; held-out accuracy of that same head against the "
        "offset baseline fit on the score split (offset = head - dependent).",
        "",
        "| relation | n score / held-out | best head | acc. score | baseline score "
        "| acc. held-out | baseline held-out |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rel, s in score.items():
        layer, head, acc = s.best()
        h = held[rel]
        lines.append(
            f"| {rel} | {s.count} / {h.count} | {layer}-{head} | {acc:.3f} | "
            f"{s.baseline_accuracy:.3f} ({s.baseline_offset:+d}) | "
            f"{float(h.accuracy[layer, head]):.3f} | {h.baseline_accuracy:.3f} |"
        )
    roles = syntactic_heads(score)
    listed = ", ".join(f"{a}-{b} ({'/'.join(r)})" for (a, b), r in roles.items()) or "none"
    lines += ["", f"`syntactic` role (score split, >= 10 points over the baseline): {listed}."]
    return lines, score


def pruning_section(model, tok, args) -> list[str]:
    score_sents = english.sentences("score")[: args.score_sentences]
    score_batches = embedding_batches(tok, score_sents)
    held_batches = embedding_batches(tok, english.sentences("heldout"))
    refs = reference_embeddings(model, held_batches)
    curves = {}
    for rescore in (False, True):
        masks, spent = pruning_curve(model, score_batches, args.steps, 6, rescore=rescore)
        cos = [mean_cosine(model, held_batches, refs, m) for m in masks]
        curves[rescore] = (masks, cos, spent)
    timing_batch = held_batches[0]
    t_len = int(timing_batch[1].sum(1).float().mean())
    long_batch = long_input(tok, english.sentences("heldout"), 256)
    lines = [
        "### Pruning on embedding fidelity",
        "",
        f"Importance: Jacobian importance on {len(score_sents)} score-split sentences. Metric: "
        f"mean cosine to the unpruned embeddings on the {len(english.sentences('heldout'))} "
        "held-out sentences. Speed-up: forward of the physically pruned model vs the "
        f"unpruned one on a batch of {timing_batch[0].shape[0]} held-out sentences (mean "
        f"{t_len} tokens) and on one input of 256 tokens (held-out sentences joined), median "
        f"of {args.rounds} interleaved rounds (range), with the FLOP ratio of the blocks.",
        "",
        "| heads pruned | fraction | cos one-shot | cos re-scored | speed-up B=32 "
        "| FLOP ratio B=32 | speed-up T=256 | FLOP ratio T=256 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    masks, cos_r, _ = curves[True]
    for step, mask in enumerate(masks):
        removed = int((mask == 0).sum())
        cells = []
        pruned = physically_pruned(model, mask) if step else None
        for batch, t in ((timing_batch, t_len), (long_batch, 256)):
            if step == 0:
                cells.append("1.00x")
            else:
                r, lo, hi = speedup(model, pruned, batch, args.rounds)
                cells.append(f"{r:.2f}x ({lo:.2f}-{hi:.2f})")
            cells.append(f"{flops_ratio(model.config, mask, t):.2f}x")
        lines.append(
            f"| {removed} | {removed / mask.numel():.2f} | {curves[False][1][step]:.4f} | "
            f"{cos_r[step]:.4f} | " + " | ".join(cells) + " |"
        )
    for rescore, name in ((False, "one-shot"), (True, "re-scored")):
        m, cos, spent = curves[rescore]
        ok = [int((mk == 0).sum()) for mk, c in zip(m, cos) if c >= 0.95]
        lines.append("")
        lines.append(
            f"{name}: at most {max(ok)} of 72 heads ({max(ok) / 72:.0%}) pruned with mean "
            f"cosine >= 0.95; scoring took {spent:.0f} s."
        )
    kept = masks[-1]
    lines += [
        "",
        "Heads kept per layer at the last re-scored point: "
        + ", ".join(str(int(kept[i].sum())) for i in range(kept.shape[0]))
        + ".",
    ]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", help="RESULTS.md to write the section into (else print)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--steps", type=int, default=9, help="pruning steps of 6 heads each")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds per point")
    p.add_argument(
        "--score-sentences", type=int, default=128, help="score-split sentences for importance"
    )
    p.add_argument("--report", help="also write the head report (JSON, syntactic roles) here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = minilm()
    t0 = time.perf_counter()
    score = english.sentences("score")
    lines = [
        HEADING,
        "",
        f"Command: `PYTHONPATH=src python benchmarks/minilm_heads.py --threads {args.threads} "
        f"--steps {args.steps} --rounds {args.rounds} --score-sentences {args.score_sentences} "
        f"--output benchmarks/RESULTS.md` (torch {torch.__version__}, {platform.machine()}, "
        f"{args.threads} threads, machine shared with other jobs). Explained in "
        "docs/real_heads.md.",
        "",
    ]
    report = head_report(model, tok, score)
    lines += positional_section(report, len(score))
    syntax_lines, syntax = syntax_section(model, tok)
    lines += ["", *syntax_lines]
    if args.report:
        with open(args.report, "w") as f:
            f.write(with_syntactic_roles(report, syntax).to_json())
    lines += ["", *pruning_section(model, tok, args)]
    lines += ["", f"Total run time {time.perf_counter() - t0:.0f} s."]
    text = "\n".join(lines) + "\n"
    if args.output:
        write_section(args.output, text, HEADING)
    print(text)


if __name__ == "__main__":
    main()
