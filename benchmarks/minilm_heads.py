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

from multihead.analysis.fidelity import (
    embedding_batches,
    jacobian_importance,
    mean_cosine,
    reference_embeddings,
)
from multihead.analysis.syntax import attention_maps, syntactic_heads, syntax_scores
from multihead.convert import minilm, select_layer_heads
from multihead.data import english
from multihead_apps.bench.results import write_section
from multihead_apps.bench.timing import interleave

HEADING = "## Heads of all-MiniLM-L6-v2"
SCORE_NAMES = ("previous", "next", "self", "cls", "sep")


@torch.no_grad()
def token_scores(model, tokenizer, sentences, batch_size=32) -> dict[str, torch.Tensor]:
    """Per score, ``(L, H)``: the mean over real queries that have the target of the weight
    on it (previous token, next token, itself, [CLS] = position 0, [SEP] = the last real
    token). Special tokens count as queries, as in Clark et al.'s averages."""
    sums = {k: 0.0 for k in SCORE_NAMES}
    counts = dict.fromkeys(SCORE_NAMES, 0)
    for start in range(0, len(sentences), batch_size):
        enc = tokenizer.encode(sentences[start : start + batch_size])
        real = enc.attention_mask  # (B, T)
        b, t = real.shape
        n = enc.lengths.view(b, 1, 1)  # (B, 1, 1)
        i = torch.arange(t).view(1, t, 1)  # query position
        j = torch.arange(t).view(1, 1, t)  # key position
        q_real = real.view(b, t, 1)
        targets = {
            "previous": (j == i - 1) & q_real,
            "next": (j == i + 1) & (j < n) & q_real,
            "self": (j == i) & q_real,
            "cls": (j == 0) & q_real,
            "sep": (j == n - 1) & q_real,
        }  # each (B, T, T)
        maps = torch.stack(attention_maps(model, enc.ids, real), dim=1)  # (B, L, H, T, T)
        for k, target in targets.items():
            tgt = target.unsqueeze(1).unsqueeze(1).to(maps.dtype)  # (B, 1, 1, T, T)
            sums[k] = sums[k] + (maps * tgt).sum(dim=(0, 3, 4))  # (L, H)
            counts[k] += int(target.sum())
    return {k: sums[k] / counts[k] for k in SCORE_NAMES}


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
    """A copy of ``model`` keeping the heads where ``mask`` is 1, through select_heads."""
    keep = [[h for h in range(mask.shape[1]) if mask[layer, h]] for layer in range(mask.shape[0])]
    return select_layer_heads(copy.deepcopy(model), keep)


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


def positional_section(scores: dict[str, torch.Tensor], n_sentences: int) -> list[str]:
    lines = [
        f"### Positional and special-token heads (score split, {n_sentences} sentences)",
        "",
        "Score = mean weight a real query puts on the target (heads `layer-head`, from 0).",
        "",
        "| target | heads with score >= 0.5 | top 3 | mean over layer 0..5 |",
        "| --- | --- | --- | --- |",
    ]
    for k in SCORE_NAMES:
        s = scores[k]
        per_layer = " / ".join(f"{float(v):.2f}" for v in s.mean(dim=1))
        lines.append(f"| {k} | {heads_over(s, 0.5)} | {top_heads(s)} | {per_layer} |")
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
    return lines


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
    lines = [
        "### Pruning on embedding fidelity",
        "",
        f"Importance: Jacobian importance on {len(score_sents)} score-split sentences. Metric: "
        f"mean cosine to the unpruned embeddings on the {len(english.sentences('heldout'))} "
        "held-out sentences. Speed-up: forward of the physically pruned model vs the "
        f"unpruned one on a batch of {timing_batch[0].shape[0]} held-out sentences (mean "
        f"{t_len} tokens), median of {args.rounds} interleaved rounds (range), with the FLOP "
        "ratio of the blocks beside it.",
        "",
        "| heads pruned | fraction | cos one-shot | cos re-scored | speed-up (re-scored) "
        "| FLOP ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    masks, cos_r, _ = curves[True]
    for step, mask in enumerate(masks):
        removed = int((mask == 0).sum())
        if step == 0:
            sp = "1.00x"
        else:
            r, lo, hi = speedup(model, physically_pruned(model, mask), timing_batch, args.rounds)
            sp = f"{r:.2f}x ({lo:.2f}-{hi:.2f})"
        lines.append(
            f"| {removed} | {removed / mask.numel():.2f} | {curves[False][1][step]:.4f} | "
            f"{cos_r[step]:.4f} | {sp} | {flops_ratio(model.config, mask, t_len):.2f}x |"
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
    lines += ["", "Heads kept per layer at the last re-scored point: "
              + ", ".join(str(int(kept[i].sum())) for i in range(kept.shape[0])) + "."]
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
    lines += positional_section(token_scores(model, tok, score), len(score))
    lines += [""] + syntax_section(model, tok)
    lines += [""] + pruning_section(model, tok, args)
    lines += ["", f"Total run time {time.perf_counter() - t0:.0f} s."]
    text = "\n".join(lines) + "\n"
    if args.output:
        write_section(args.output, text, HEADING)
    print(text)


if __name__ == "__main__":
    main()
