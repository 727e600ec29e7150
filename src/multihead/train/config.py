"""The training options (:class:`TrainConfig`), validated when built."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from typing import Any

from multihead import _checks
from multihead.data import TASKS
from multihead.optim import OPTIMIZERS

SCHEDULES = ("cosine", "linear")
DROPHEAD_SCHEDULES = ("constant", "v")
DEVICES = ("auto", "cpu", "cuda")
# Train-config fields that may change when resuming without changing what the run computes.
RESUMABLE_CHANGES = frozenset(
    {
        "steps",
        "eval_every",
        "eval_tokens",
        "log_every",
        "save_every",
        "compile",
        "time_limit",
        "skip_nonfinite",
    }
)


@dataclass
class TrainConfig:
    """Training options.

    Attributes:
        task: ``"text"`` (byte-level corpus) or a synthetic task (``"induction"``,
            ``"induction_random"``, ``"copy"``, ``"reverse"``).
        data: a file or folder for ``"text"`` (None = the Python standard library sources).
        val_fraction: share of the corpus held out for validation, in (0, 0.5].
        steps: optimizer steps in total.
        batch_size: global batch B (sequences per step, summed over processes and
            accumulation steps); divisible by ``world_size * grad_accum``.
        seq_len: T.
        grad_accum: micro-batches per step in each process.
        lr, min_lr: peak and final learning rate.
        warmup_steps: linear warmup from 0 to ``lr``.
        weight_decay: decay on matrices and embeddings (not on biases and norms).
        beta1, beta2: AdamW betas.
        optimizer: ``"adamw"``, ``"muon"`` (Muon on the hidden matrices, each projection of
            a packed one apart, AdamW on the rest) or ``"muon_whole"`` (Muon on each whole
            matrix); :mod:`multihead.optim`.
        schedule: after warmup, ``"cosine"`` or ``"linear"`` decay from ``lr`` to ``min_lr``.
        grad_clip: clip the global gradient norm to this (0 = off).
        eval_every: evaluate every this many steps (and at the end).
        eval_tokens: validation tokens per evaluation (0 = the whole validation split).
        log_every: write a train record to the JSONL log every this many steps.
        save_every: checkpoint every this many steps (0 = only at the end).
        bf16: bf16 autocast for the forward pass.
        compile: ``torch.compile`` the model.
        seed: seeds initialization, batches and dropout.
        time_limit: stop after this many seconds of training (0 = no limit; time spent
            evaluating and checkpointing is not counted). The decay schedule then follows
            whichever of steps and training time is further along, so the learning rate has
            decayed when time runs out; such runs depend on the machine's speed and are not
            bit-reproducible.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        skip_nonfinite: steps with a non-finite loss or gradient norm that may be skipped
            (no optimizer step) in one call of train; one more stops the run (0 = stop at the
            first).
        drophead_schedule: how the model's DropHead rate p (``drophead``) varies over the
            run: ``"constant"``, or ``"v"``, the V shape of Zhou et al. 2020 ("Scheduled
            DropHead"): p falls linearly to 0 at mid-run, then rises back to p.
    """

    task: str = "text"
    data: str | None = None
    val_fraction: float = 0.01
    steps: int = 1000
    batch_size: int = 32
    seq_len: int = 256
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    optimizer: str = "adamw"
    schedule: str = "cosine"
    grad_clip: float = 1.0
    eval_every: int = 200
    eval_tokens: int = 65536
    log_every: int = 10
    save_every: int = 0
    bf16: bool = False
    compile: bool = False
    seed: int = 0
    time_limit: float = 0.0
    device: str = "auto"
    skip_nonfinite: int = 0
    drophead_schedule: str = "constant"

    def __post_init__(self) -> None:
        _checks.require_choice("task", self.task, ("text", *TASKS))
        if isinstance(self.data, os.PathLike):
            self.data = os.fspath(self.data)  # the config is saved as JSON
        if self.data is not None and not isinstance(self.data, str):
            raise TypeError(f"data must be a path or None, got {self.data!r}")
        _checks.require_number("val_fraction", self.val_fraction, above=0, maximum=0.5)
        for name in ("steps", "batch_size", "seq_len", "grad_accum", "eval_every", "log_every"):
            _checks.require_int(name, getattr(self, name), minimum=1)
        for name in ("warmup_steps", "eval_tokens", "save_every", "seed", "skip_nonfinite"):
            _checks.require_int(name, getattr(self, name), minimum=0)
        for name in ("lr", "min_lr", "weight_decay", "grad_clip", "time_limit"):
            _checks.require_number(name, getattr(self, name), minimum=0)
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr} must not exceed lr={self.lr}")
        for name in ("beta1", "beta2"):
            _checks.require_number(name, getattr(self, name), minimum=0, below=1)
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"batch_size={self.batch_size} is not divisible by grad_accum={self.grad_accum}"
            )
        _checks.require_choice("optimizer", self.optimizer, OPTIMIZERS)
        _checks.require_choice("schedule", self.schedule, SCHEDULES)
        for name in ("bf16", "compile"):
            _checks.require_bool(name, getattr(self, name))
        _checks.require_choice("device", self.device, DEVICES)
        _checks.require_choice("drophead_schedule", self.drophead_schedule, DROPHEAD_SCHEDULES)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; expected {sorted(names)}")
        return cls(**data)
