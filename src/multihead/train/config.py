"""The training options (:class:`TrainConfig`), validated when built."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from multihead.data import TASKS
from multihead.optim import OPTIMIZERS

SCHEDULES = ("cosine", "linear")
DEVICES = ("auto", "cpu", "cuda")
# Train-config fields that may change when resuming without changing what the run computes.
RESUMABLE_CHANGES = frozenset(
    {"steps", "eval_every", "eval_tokens", "log_every", "save_every", "compile", "time_limit"}
)


@dataclass
class TrainConfig:
    """Training options.

    Attributes:
        task: ``"text"`` (byte-level corpus) or a synthetic task (``"induction"``, ``"copy"``,
            ``"reverse"``).
        data: files or folders for ``"text"`` (None = the Python standard library sources).
        val_fraction: share of the corpus held out for validation.
        steps: optimizer steps in total.
        batch_size: global batch B (sequences per step, summed over processes and
            accumulation steps); divisible by ``world_size * grad_accum``.
        seq_len: T.
        grad_accum: micro-batches per step in each process.
        lr, min_lr: peak and final learning rate.
        warmup_steps: linear warmup from 0 to ``lr``.
        weight_decay: decay on matrices and embeddings (not on biases and norms).
        beta1, beta2: AdamW betas.
        optimizer: ``"adamw"``, or ``"muon"`` (Muon on the blocks' matrices, AdamW on the
            rest; :mod:`multihead.optim`).
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

    def __post_init__(self) -> None:
        if self.task not in ("text", *TASKS):
            raise ValueError(f"task must be one of {('text', *TASKS)}, got {self.task!r}")
        for name in ("steps", "batch_size", "seq_len", "grad_accum", "eval_every", "log_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("warmup_steps", "eval_tokens", "save_every", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        for name in ("lr", "min_lr", "weight_decay", "grad_clip", "time_limit"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"{name} must be a number >= 0, got {v!r}")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr} must not exceed lr={self.lr}")
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v < 1:
                raise ValueError(f"{name} must be in [0, 1), got {v!r}")
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"batch_size={self.batch_size} is not divisible by grad_accum={self.grad_accum}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; expected {sorted(names)}")
        return cls(**data)
