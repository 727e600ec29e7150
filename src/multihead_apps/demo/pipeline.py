"""The demo's steps: train, analyze, prune, report. Each step's failure becomes one
:class:`StepFailed` naming the step, which the command prints as one line.

Legend: L layers, H heads per layer.
"""

from __future__ import annotations

import contextlib
import copy
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from multihead import analysis
from multihead.checkpoint import save_checkpoint
from multihead.data import IGNORE, SyntheticTask
from multihead.models import DecoderLM
from multihead.train import train
from multihead.viz.curves import phase_change, read_log
from multihead_apps.demo import heads
from multihead_apps.demo.recipe import TASK, Recipe

# The phase change must take the loss on the repeated half below this share of the loss of
# a uniform guess (ln V): before it, a model can only guess among the tokens in context.
LEARNED_SHARE = 0.5


class StepFailed(Exception):
    """A demo step failed; ``str()`` is the one line the command prints."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"step '{step}' failed: {reason}")
        self.step = step


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Turn any error inside into :class:`StepFailed` naming ``name``."""
    try:
        yield
    except StepFailed:
        raise
    except Exception as err:  # every failure of a step is reported the same way
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StepFailed(name, f"{type(err).__name__}: {reason}") from err


@dataclass
class Demo:
    """What the steps found; filled in step by step."""

    recipe: Recipe
    out: Path
    model: DecoderLM | None = None
    pruned: DecoderLM | None = None
    circuit: DecoderLM | None = None  # the two named heads alone, fine-tuned
    log: list[tuple[int, float]] = field(default_factory=list)
    phase_step: int | None = None
    train_seconds: float = 0.0
    report: analysis.HeadReport | None = None  # with importance
    importance: torch.Tensor | None = None  # (L, H)
    named: dict[str, tuple[int, int]] = field(default_factory=dict)  # role -> (layer, head)
    keep: dict[int, list[int]] = field(default_factory=dict)
    base_loss: float = math.nan
    pruned_loss: float = math.nan
    circuit_loss: float = math.nan  # the two named heads alone (head mask)
    circuit_tuned: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    curve: list[tuple[float, float]] = field(default_factory=list)  # (fraction removed, loss)
    files: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if not hasattr(self, "_batches"):
            r = self.recipe
            self._batches = heads.task_batches(
                TASK,
                vocab_size=r.vocab_size,
                seq_len=r.seq_len,
                batch_size=r.batch_size,
                count=r.eval_batches,
                seed=r.seed,
            )
        return self._batches


def train_model(demo: Demo, *, progress: bool) -> None:
    """Train (checkpoint and log.jsonl in ``out/model``), find the phase change."""
    r = demo.recipe
    start = time.perf_counter()
    result = train(r.model_config(), r.train_config(), out=demo.out / "model", progress=progress)
    demo.train_seconds = time.perf_counter() - start
    demo.model = DecoderLM.from_checkpoint(result["checkpoint"])
    demo.log = read_log(demo.out / "model")["train"]
    demo.phase_step = phase_change([s for s, _ in demo.log], [v for _, v in demo.log])
    demo.base_loss = heads.repeated_half_loss(demo.model, demo.batches)
    uniform = math.log(r.vocab_size)
    if demo.base_loss > LEARNED_SHARE * uniform:
        raise ValueError(
            f"no induction phase change: the loss on the repeated half is {demo.base_loss:.2f} "
            f"nats after {r.steps} steps, above {LEARNED_SHARE} x ln(V) = "
            f"{LEARNED_SHARE * uniform:.2f} (train longer: --steps)"
        )


def analyze(demo: Demo) -> None:
    """The library's head report (:func:`multihead.analysis.analyze`, no hints: the roles are
    its own) on repeated random tokens, with gradient importance on the task, and the two heads
    it names: the best previous-token head of layer 0 and induction head of layer 1."""
    r = demo.recipe
    probe = heads.repeated_tokens(r.vocab_size, r.seq_len, batch_size=64, seed=r.seed + 1)
    report = analysis.analyze(demo.model, [probe], progress=False)
    importance = analysis.gradient_importance(demo.model, demo.batches, progress=False)
    demo.importance = torch.stack(importance)  # (L, H): the model is unpruned
    demo.report = report.with_importance(
        {(h.layer, h.head): float(demo.importance[h.layer, h.head]) for h in report.heads}
    )
    for role, layer in (("previous_token", 0), ("induction", 1)):
        named = [h for h in demo.report.heads if h.layer == layer and role in h.roles]
        if not named:
            best = max(
                (h for h in demo.report.heads if h.layer == layer),
                key=lambda h: h.scores.get(role, 0.0),
            )
            raise ValueError(
                f"the analysis names no {role.replace('_', '-')} head in layer {layer} (the "
                f"best, head {best.head}, scores {best.scores.get(role, 0.0):.2f})"
            )
        best = max(named, key=lambda h: h.scores[role])
        demo.named[role] = (layer, best.head)


def _removal_order(importance: torch.Tensor, named: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """The unnamed heads, least important first (importance is normalized per layer, so
    layers compare, as in Michel et al.'s global pruning)."""
    cells = [
        (float(importance[layer, head]), layer, head)
        for layer in range(importance.shape[0])
        for head in range(importance.shape[1])
        if (layer, head) not in named
    ]
    return [(layer, head) for _, layer, head in sorted(cells)]


def prune(demo: Demo) -> None:
    """Remove unnamed heads least important first (the pruning curve, by head mask); keep
    the named heads plus the fewest others that hold the loss within the tolerance; prune
    those physically (:func:`multihead.analysis.prune_heads`) and check that the pruned model
    computes what the masked one did."""
    model, r = demo.model, demo.recipe
    cfg = model.config
    named = set(demo.named.values())
    order = _removal_order(demo.importance, named)
    total = cfg.num_layers * cfg.num_heads
    losses = [
        heads.repeated_half_loss(
            model, demo.batches, heads.removal_mask(cfg.num_layers, cfg.num_heads, order[: k + 1])
        )
        for k in range(len(order))
    ]
    demo.curve = [(0.0, demo.base_loss)]
    demo.curve += [((k + 1) / total, loss) for k, loss in enumerate(losses)]
    demo.circuit_loss = losses[-1] if losses else demo.base_loss  # the named heads alone
    # The most heads removed (a prefix of the order) with the loss still within tolerance.
    limit = (1 + r.tolerance) * demo.base_loss
    count = max((k + 1 for k, loss in enumerate(losses) if loss <= limit), default=0)
    removed: dict[int, list[int]] = {}
    for layer, head in order[:count]:
        removed.setdefault(layer, []).append(head)
    demo.keep = {
        layer: [h for h in range(cfg.num_heads) if h not in removed.get(layer, [])]
        for layer in range(cfg.num_layers)
    }
    masked = losses[count - 1] if count else demo.base_loss
    demo.pruned = analysis.prune_heads(copy.deepcopy(model), removed)
    demo.pruned_loss = heads.repeated_half_loss(demo.pruned, demo.batches)
    if not math.isclose(demo.pruned_loss, masked, rel_tol=1e-4, abs_tol=1e-6):
        raise ValueError(
            f"the pruned model's loss {demo.pruned_loss:.6f} differs from the head-masked "
            f"model's {masked:.6f}"
        )
    pcfg = demo.pruned.config
    save_checkpoint(
        demo.out / "pruned",
        model=demo.pruned,
        kind=pcfg.kind,
        config=pcfg.to_dict(),
        meta={"task": TASK},
    )


def tune_circuit(demo: Demo) -> None:
    """Keep only the two named heads (physically), then train that 2-head model a few steps
    on the task: the heads of each layer shared the work, and once the others are gone the
    named pair takes it over (pruning then fine-tuning, as in most pruning work after Michel
    et al. 2019). Records the loss on the repeated half every ``tune_every`` steps."""
    r = demo.recipe
    cfg = demo.model.config
    named = set(demo.named.values())
    removed = {
        layer: [h for h in range(cfg.num_heads) if (layer, h) not in named]
        for layer in range(cfg.num_layers)
    }
    model = analysis.prune_heads(copy.deepcopy(demo.model), removed)
    demo.circuit_tuned = [(0, heads.repeated_half_loss(model, demo.batches))]
    data = SyntheticTask(TASK, vocab_size=r.vocab_size, seq_len=r.seq_len)
    g = torch.Generator().manual_seed(r.seed * 1_000_003 + 7)  # apart from the eval batches
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=0.0)
    every = max(1, r.tune_steps // 10)
    for i in range(r.tune_steps):
        model.train()
        x, y = data.batch("train", batch_size=r.batch_size, generator=g)  # (B, T) each
        logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (i + 1) % every == 0 or i + 1 == r.tune_steps:
            model.eval()
            demo.circuit_tuned.append((i + 1, heads.repeated_half_loss(model, demo.batches)))
    model.eval()
    demo.circuit = model


def timed(demo: Demo, name: str, fn: Callable[[], Any]) -> Any:
    """Run step ``name`` (errors become :class:`StepFailed`) and record its seconds."""
    start = time.perf_counter()
    with step(name):
        value = fn()
    demo.seconds[name] = time.perf_counter() - start
    return value


def run(
    recipe: Recipe, out: str | Path, *, progress: bool = True, say: Callable[[str], None] = print
) -> Demo:
    """Every step in order; raises :class:`StepFailed` at the first failure."""
    from multihead_apps.demo import report

    demo = Demo(recipe, Path(out))
    with step("setup"):
        demo.out.mkdir(parents=True, exist_ok=True)
        # A demo run replaces the previous one's model and pruned checkpoint (training
        # refuses to write a fresh run over an existing one).
        for part in ("model", "pruned"):
            if (demo.out / part).is_dir():
                shutil.rmtree(demo.out / part)
    say(f"[1/4] train: 2-layer attention-only model, {recipe.steps} steps on {TASK}")
    timed(demo, "train", lambda: train_model(demo, progress=progress))
    say(
        f"[2/4] analyze: head scores and gradient importance of {demo.model.config.num_layers}"
        f" x {demo.model.config.num_heads} heads"
    )
    timed(demo, "analyze", lambda: analyze(demo))
    say("[3/4] prune: every head but the fewest the loss needs")
    timed(demo, "prune", lambda: prune(demo))
    if recipe.tune_steps:
        say(f"      then the named heads alone, fine-tuned {recipe.tune_steps} steps")
        timed(demo, "tune", lambda: tune_circuit(demo))
    say("[4/4] report: figures, viewer, report.html")
    timed(demo, "report", lambda: report.write(demo))
    return demo
