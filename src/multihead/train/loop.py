"""The training loop: :func:`train` sets a run up (:class:`Run`), then every step is
:func:`train_step` followed by :func:`after_step` (log, evaluate, checkpoint, time limit).

Legend: B global batch (sequences per optimizer step, over all processes and accumulation
steps), b a process's micro-batch, T sequence length, V vocabulary size.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from multihead import _checks
from multihead.attention import MultiHeadAttention
from multihead.checkpoint import LATEST, prepare_output_dir
from multihead.data import IGNORE
from multihead.models import DecoderConfig, DecoderLM
from multihead.optim import make_optimizer
from multihead.train import nonfinite, state
from multihead.train.clock import TokenRate, TrainingClock
from multihead.train.config import TrainConfig
from multihead.train.data import TrainData
from multihead.train.evaluate import eval_record, evaluating, score_batches
from multihead.train.log import LOG, RunLog
from multihead.train.schedule import drophead_at, lr_at
from multihead.train.world import World, all_mean, from_main, setup_world


@dataclass
class Run:
    """Everything one call of :func:`train` works with, and what it has done so far."""

    config: TrainConfig
    world: World
    out: Path
    data: TrainData
    model: DecoderLM
    forward: nn.Module  # the model as trained: compiled and/or wrapped for DDP
    optimizer: torch.optim.Optimizer
    log: RunLog
    start: int  # the step this call starts from (> 0 when resuming)
    bar: Any = None  # tqdm progress bar (main process, progress=True)
    losses: list[float] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None  # the last one written
    completed: int = 0  # steps done, counting from 0 (not from start)
    saved: int = 0  # the step of the last checkpoint
    skipped: int = 0  # steps with a non-finite loss or gradient so far

    def __post_init__(self) -> None:
        self.completed = self.saved = self.start
        self.clock = TrainingClock()  # training time starts now
        self.rate = TokenRate(self.clock)
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]

    def last_good(self) -> str:
        return nonfinite.last_good(self.checkpoint, self.saved, self.start)

    def check_weights(self, step: int) -> None:
        """NonFiniteError if the weights after step ``step`` (1-based) are not finite."""
        if not nonfinite.weights_finite(self.model, self.world):
            raise nonfinite.bad_weights(step, self.config.steps, where=self.last_good())

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(
            self.world.device.type, dtype=torch.bfloat16, enabled=self.config.bf16
        )

    @property
    def tokens_per_step(self) -> int:
        return self.config.batch_size * self.config.seq_len

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.log.close()


def train(
    model_config: DecoderConfig,
    config: TrainConfig,
    *,
    out: str | os.PathLike,
    resume: str | os.PathLike | None = None,
    progress: bool = True,
    allow_finished: bool = False,
) -> dict[str, Any]:
    """Train a :class:`~multihead.models.DecoderLM`; checkpoints and ``log.jsonl`` go to
    ``out``.

    Run it in one process, or under ``torchrun --nproc_per_node N`` for DDP (gloo on CPU,
    nccl on GPU); the loss sequence is the same up to float summation order.

    Args:
        resume: a checkpoint directory (or step directory) to continue from; the loss
            sequence after resuming equals the uninterrupted run's. Its configs must match.
        progress: show a tqdm bar (main process only).
        allow_finished: when the checkpoint resumed from is already at ``config.steps`` (or
            past it), return without training (and without touching the log) instead of
            raising ValueError.

    Returns:
        ``{"losses": [...], "evals": [...], "checkpoint": path, "tokens_per_s": float}``
        for the steps run in this call (a step skipped for its non-finite loss counts, with
        that loss); nothing when ``allow_finished`` let a finished run return.

    Raises:
        NonFiniteError: a step's loss or gradient norm is not finite (beyond
            ``config.skip_nonfinite`` such steps), or the weights are; the message names the
            step and the last good checkpoint.
        ValueError: bad configs, data or output directory; a resume into different configs
            or from a checkpoint already at ``config.steps``.
        FileExistsError: a fresh run (no ``resume``) into a directory that already holds a
            run's checkpoints or log; nothing there is touched.
    """
    run = start_run(
        model_config,
        config,
        out=Path(out),
        resume=resume,
        progress=progress,
        allow_finished=allow_finished,
    )
    try:
        for step in range(run.start, config.steps):
            loss, lr, skipped = train_step(run, step)
            if after_step(run, step + 1, loss, lr, skipped):
                break
    except KeyboardInterrupt:
        # Keep the work done so far; --resume continues from here. (One process only: the
        # others of a DDP run may not reach the collectives a checkpoint needs.)
        if run.world.size == 1 and run.completed > run.start and run.completed != run.saved:
            checkpoint(run, run.completed, {"interrupted": True})
        raise
    finally:
        run.close()
    return {
        "losses": run.losses,
        "evals": run.evals,
        "checkpoint": run.checkpoint,
        "tokens_per_s": len(run.losses) * run.tokens_per_step / max(run.clock.trained(), 1e-9),
    }


def _check(model_config: DecoderConfig, config: TrainConfig) -> None:
    if not isinstance(model_config, DecoderConfig):
        raise TypeError(f"model_config must be a DecoderConfig, got {type(model_config).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if model_config.position == "learned" and config.seq_len > model_config.max_seq_len:
        raise ValueError(
            f"seq_len={config.seq_len} exceeds the model's max_seq_len="
            f"{model_config.max_seq_len} (learned positions)"
        )


def _refuse_existing_run(out: Path) -> None:
    """A fresh run never writes over another run's checkpoints and log (nothing is lost)."""
    held = [name for name in (LATEST, LOG) if (out / name).exists()]
    if held:
        raise FileExistsError(
            f"output directory {str(out)!r} already holds a run ({', '.join(held)}); continue "
            f"it with --resume {out}, or give a new --out (or delete that directory first)"
        )


def start_run(
    model_config: DecoderConfig,
    config: TrainConfig,
    *,
    out: Path,
    resume: str | os.PathLike | None,
    progress: bool,
    allow_finished: bool = False,
) -> Run:
    """The model (initialised identically in every process, or restored from ``resume``),
    its optimizer, the data, the log and the progress bar."""
    _check(model_config, config)
    _checks.require_bool("progress", progress)
    _checks.require_bool("allow_finished", allow_finished)
    world = setup_world(config.device)
    # A bad output path fails now, not at the first checkpoint, and in every process alike
    # (one failing alone would leave the others waiting in a collective).
    prepare_output_dir(out)
    if resume is None:
        _refuse_existing_run(out)
    if config.batch_size % (world.size * config.grad_accum):
        raise ValueError(
            f"batch_size={config.batch_size} must be divisible by world size x grad_accum = "
            f"{world.size} x {config.grad_accum}"
        )
    data = TrainData(config, model_config)
    torch.manual_seed(config.seed)  # identical initialization in every process
    model = DecoderLM(model_config).to(world.device)
    optimizer = make_optimizer(
        model,
        config.optimizer,
        lr=config.lr,
        weight_decay=config.weight_decay,
        betas=(config.beta1, config.beta2),
    )
    start = 0
    if resume is not None:
        start = state.restore(resume, model, optimizer, config, world)
        if start >= config.steps and not allow_finished:
            where = (
                f": the run already has its steps={config.steps}"
                if start == config.steps
                else f", past steps={config.steps}"
            )
            raise ValueError(
                f"the checkpoint {str(resume)!r} is at step {start}{where}, nothing to "
                f"train. Give more steps to continue (multihead train --resume DIR --steps N "
                f"with N > {start}), or allow_finished=True (--allow-finished) to accept a "
                "finished run"
            )
    else:
        torch.manual_seed(config.seed * 7919 + world.rank)  # dropout differs across processes
    forward: nn.Module = torch.compile(model) if config.compile else model
    if world.size > 1:
        forward = nn.parallel.DistributedDataParallel(
            forward, device_ids=[world.device.index] if world.device.type == "cuda" else None
        )
    finished = start >= config.steps
    # A finished run trains nothing and leaves its log alone.
    resume_step = start if resume is not None else None
    log = RunLog(out, main=world.main and not finished, resume_step=resume_step)
    bar = None
    if progress and world.main and not finished:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=start, unit="step", dynamic_ncols=True)
    model.train()
    return Run(config, world, out, data, model, forward, optimizer, log, start, bar)


def train_step(run: Run, step: int) -> tuple[float, float, bool]:
    """One optimizer step (0-based ``step``) on the step's global batch, split into this
    process's rows and ``grad_accum`` micro-batches; returns (mean token loss, learning rate,
    whether the step was skipped).

    The loss of a micro-batch is its summed token loss divided by the number of scored tokens
    in the whole global batch, so gradients add up to the same mean whatever the split into
    processes and accumulation steps. A step whose loss or gradient norm is not finite makes
    no optimizer step: it is skipped within ``skip_nonfinite``, else NonFiniteError stops the
    run (:mod:`~multihead.train.nonfinite`).
    """
    config, world = run.config, run.world
    lr = lr_at(step, config, run.clock.trained())
    if config.time_limit:  # wall time differs between processes: use process 0's
        lr = from_main(lr, world)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    set_drophead(run, step)
    x, y = run.data.batch(step)  # (B, T) global
    scored = int((y != IGNORE).sum())  # normalizer over the whole global batch
    if scored == 0:
        raise ValueError(f"the batch of step {step + 1} has no scored targets (all IGNORE)")
    local = config.batch_size // world.size
    micro = local // config.grad_accum
    x = x[world.rank * local : (world.rank + 1) * local].to(world.device)  # (B / size, T)
    y = y[world.rank * local : (world.rank + 1) * local].to(world.device)
    step_loss = torch.zeros((), device=world.device)
    for i in range(config.grad_accum):
        xm, ym = x[i * micro : (i + 1) * micro], y[i * micro : (i + 1) * micro]  # (b, T)
        sync = world.size == 1 or i == config.grad_accum - 1
        with contextlib.nullcontext() if sync else run.forward.no_sync():
            with run.autocast():
                logits = run.forward(xm)  # (b, T, V)
            loss_sum = F.cross_entropy(
                logits.float().view(-1, logits.shape[-1]),  # (b*T, V)
                ym.reshape(-1),  # (b*T,)
                ignore_index=IGNORE,
                reduction="sum",
            )
            # DDP averages gradients over processes; scale back to a global mean.
            loss = loss_sum * (world.size / scored)
            loss.backward()
        step_loss += loss.detach() / world.size
    norm = nonfinite.grad_norm(run.parameters, config.grad_clip)
    # One collective for both: a NaN in any process makes the mean NaN in every process.
    both = all_mean(torch.stack((step_loss, norm.to(step_loss))), world)  # (2,)
    mean_loss, mean_norm = float(both[0] * world.size), float(both[1])
    run.completed = step + 1
    if math.isfinite(mean_loss) and math.isfinite(mean_norm):
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
        return mean_loss, lr, False
    run.optimizer.zero_grad(set_to_none=True)
    run.skipped += 1
    error = nonfinite.bad_step(
        step + 1,
        config.steps,
        mean_loss,
        mean_norm,
        skipped=run.skipped,
        allowed=config.skip_nonfinite,
        where=run.last_good(),
    )
    run.log.write(
        nonfinite.record(step + 1, mean_loss, mean_norm, "stopped" if error else "skipped")
    )
    if error is not None:
        raise error
    return mean_loss, lr, True


def set_drophead(run: Run, step: int) -> None:
    """Give every attention layer step ``step``'s DropHead rate (:func:`drophead_at`)."""
    rate = run.model.config.drophead
    if rate == 0.0 or run.config.drophead_schedule == "constant":
        return  # the layers were built with it
    rate = drophead_at(step, run.config, rate, run.clock.trained())
    if run.config.time_limit:  # as the learning rate: process 0's clock decides
        rate = from_main(rate, run.world)
    for m in run.model.modules():
        if isinstance(m, MultiHeadAttention):
            m.drophead = rate


def after_step(run: Run, done: int, loss: float, lr: float, skipped: bool = False) -> bool:
    """Record step ``done`` (1-based), log, evaluate and checkpoint when due; return whether
    the run stops here (the last step, or the time limit reached). Weights that are not
    finite are neither evaluated nor saved: NonFiniteError."""
    config = run.config
    run.losses.append(loss)
    run.rate.add(run.tokens_per_step)
    trained = run.clock.trained()
    out_of_time = bool(config.time_limit) and trained >= config.time_limit
    if config.time_limit:  # every process stops at the same step
        out_of_time = bool(from_main(float(out_of_time), run.world))
    last = done == config.steps or out_of_time
    tps = run.rate.per_s()
    if run.bar is not None:
        run.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}")
        run.bar.update(1)
    if done % config.log_every == 0 or last:
        run.log.write(
            {
                "type": "train",
                "step": done,
                "loss": None if skipped else loss,
                "lr": lr,
                "tokens_per_s": tps,
                "elapsed_s": trained,
            }
        )
        run.rate.restart()
    due_eval = done % config.eval_every == 0 or last
    due_save = (config.save_every and done % config.save_every == 0) or last
    if not (due_eval or due_save):
        return out_of_time
    with run.clock.pause():  # evaluating and checkpointing is not training time
        run.check_weights(done)
        extra = evaluate(run, done) if due_eval else {}
        if due_save:
            checkpoint(run, done, extra)
    return out_of_time


def evaluate(run: Run, step: int) -> dict[str, Any]:
    """Score the validation batches, log the record; return its ``val_*`` values."""
    with evaluating(run.model):
        scores = score_batches(
            run.forward, run.data.eval_batches(), device=run.world.device, autocast=run.autocast()
        )
    record = eval_record(step, scores, run.config.task)
    run.evals.append(record)
    run.log.write(record)
    values = {k: v for k, v in record.items() if k.startswith("val_")}
    if run.bar is not None:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if k != "val_tokens")
        run.bar.write(f"step {step}: {shown}")
    return values


def checkpoint(run: Run, step: int, meta: dict[str, Any]) -> None:
    """Save step ``step`` with ``meta`` (the last evaluation's values) in its manifest; never
    non-finite weights."""
    run.check_weights(step)
    run.checkpoint = state.save(
        run.out, run.model, run.optimizer, run.config, run.world, step=step, meta=meta
    )
    run.saved = step
