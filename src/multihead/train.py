"""One training loop for a single process and for ``torchrun --nproc_per_node N`` (DDP).

Legend: B global batch (sequences per optimizer step, over all processes and accumulation
steps), T sequence length, V vocabulary size.

What makes runs reproducible and resumable:

- The batch of step ``s`` is drawn from a generator seeded by ``(seed, s)``: the data do not
  depend on how many steps ran before in this process, and every process draws the same global
  batch and takes its own rows. A resumed run therefore sees exactly the batches the
  uninterrupted run would have, and N processes see the rows one process would.
- The loss of a micro-batch is its summed token loss divided by the number of scored tokens in
  the whole global batch, so gradients add up to the same mean whatever the split into
  processes and accumulation steps.
- Checkpoints hold weights (safetensors), both configs (JSON), the optimizer state and every
  process's RNG state (``torch.load(weights_only=True)``), written atomically.

Optimizer: AdamW (Loshchilov and Hutter 2019), or Muon on the blocks' matrices with AdamW on
the rest (:mod:`multihead.optim`); weight decay on matrices and embeddings only; linear warmup
then cosine (Loshchilov and Hutter 2017, SGDR) or linear decay to ``min_lr``; gradient clipping
by global norm; optional bf16 autocast.

Example:
    >>> import tempfile
    >>> from multihead.models import DecoderConfig
    >>> from multihead.train import TrainConfig, train
    >>> model_cfg = DecoderConfig(vocab_size=12, max_seq_len=16, d_model=32, num_layers=1,
    ...                           num_heads=2)
    >>> cfg = TrainConfig(task="copy", steps=3, batch_size=4, seq_len=15, eval_every=3)
    >>> result = train(model_cfg, cfg, out=tempfile.mkdtemp(), progress=False)
    >>> len(result["losses"])
    3
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn import functional as F

from multihead.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from multihead.data import IGNORE, TASKS, ByteCorpus, SyntheticTask
from multihead.models import DecoderConfig, DecoderLM
from multihead.optim import OPTIMIZERS, make_optimizer

LOG = "log.jsonl"
SCHEDULES = ("cosine", "linear")
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
        if self.device not in ("auto", "cpu", "cuda"):
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


def lr_at(step: int, config: TrainConfig, elapsed: float | None = None) -> float:
    """Learning rate of step ``step`` (0-based): linear warmup, then cosine to ``min_lr``
    (over the steps, or over ``time_limit`` seconds if that comes first)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    if config.time_limit and elapsed is not None:
        progress = max(progress, min(1.0, elapsed / config.time_limit))
    if config.schedule == "linear":
        return config.lr + (config.min_lr - config.lr) * progress
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------- data
class _Data:
    """The task behind a common interface: global batches and evaluation batches."""

    def __init__(self, config: TrainConfig, model_config: DecoderConfig) -> None:
        self.config = config
        if config.task == "text":
            if model_config.vocab_size < 256:
                raise ValueError(
                    f"task 'text' is byte-level and needs vocab_size >= 256, got "
                    f"vocab_size={model_config.vocab_size}"
                )
            self.corpus: ByteCorpus | None = ByteCorpus.from_paths(
                config.data, val_fraction=config.val_fraction
            )
            self.task = None
            for split in ("train", "val"):
                n = len(self.corpus.split(split))
                if n < config.seq_len + 1:
                    raise ValueError(
                        f"the {split} split of corpus {self.corpus.source} has {n} bytes, "
                        f"fewer than seq_len + 1 = {config.seq_len + 1}"
                    )
        else:
            self.corpus = None
            self.task = SyntheticTask(
                config.task, vocab_size=model_config.vocab_size, seq_len=config.seq_len
            )

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The global batch of ``step`` ``(B, T)``: the same in every process and run."""
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        b, t = self.config.batch_size, self.config.seq_len
        if self.corpus is not None:
            return self.corpus.batch("train", batch_size=b, seq_len=t, generator=g)
        return self.task.batch("train", batch_size=b, generator=g)

    def eval_batches(self):
        c = self.config
        if self.corpus is not None:
            yield from self.corpus.windows(
                "val", batch_size=c.batch_size, seq_len=c.seq_len, max_tokens=c.eval_tokens or None
            )
            return
        g = torch.Generator().manual_seed(c.seed * 1_000_003 + 2**40)  # disjoint from training
        n = max(1, (c.eval_tokens or 65536) // (c.batch_size * c.seq_len))
        for _ in range(n):
            yield self.task.batch("val", batch_size=c.batch_size, generator=g)


# ---------------------------------------------------------------------- distributed
@dataclass
class _World:
    rank: int
    size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_world(config: TrainConfig) -> _World:
    want_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but CUDA is not available")
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return _World(0, 1, torch.device("cuda" if want_cuda else "cpu"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo")
    rank = dist.get_rank()
    if want_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return _World(rank, size, torch.device("cuda", local))
    return _World(rank, size, torch.device("cpu"))


def _all_mean(value: torch.Tensor, world: _World) -> torch.Tensor:
    if world.size > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= world.size
    return value


# ---------------------------------------------------------------------- checkpoint helpers
def check_resume_configs(
    ckpt_model: dict[str, Any],
    ckpt_train: dict[str, Any],
    model_config: DecoderConfig,
    config: TrainConfig,
) -> None:
    """Raise ValueError naming every field that differs from the checkpoint's configs (a few
    train fields such as ``steps`` may change)."""
    problems = DecoderConfig.from_dict(ckpt_model).diff(model_config)
    saved = TrainConfig.from_dict(ckpt_train)
    problems += [
        f"{f.name}: {getattr(saved, f.name)!r} != {getattr(config, f.name)!r}"
        for f in fields(TrainConfig)
        if f.name not in RESUMABLE_CHANGES and getattr(saved, f.name) != getattr(config, f.name)
    ]
    if problems:
        raise ValueError(
            "--resume into a different config: the checkpoint was trained with (checkpoint != "
            "requested) " + "; ".join(problems)
        )


def _rewrite_log(path: Path, keep_until: int) -> None:
    """Drop log records past the resumed step (they belonged to the interrupted run)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            if json.loads(line).get("step", 0) <= keep_until:
                kept.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(k + "\n" for k in kept))
    os.replace(tmp, path)


# ---------------------------------------------------------------------- the loop
def train(
    model_config: DecoderConfig,
    config: TrainConfig,
    *,
    out: str | os.PathLike,
    resume: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a :class:`~multihead.models.DecoderLM`; checkpoints and ``log.jsonl`` go to
    ``out``.

    Run it in one process, or under ``torchrun --nproc_per_node N`` for DDP (gloo on CPU,
    nccl on GPU); the loss sequence is the same up to float summation order.

    Args:
        resume: a checkpoint directory (or step directory) to continue from; the loss
            sequence after resuming equals the uninterrupted run's. Its configs must match.
        progress: show a tqdm bar (main process only).

    Returns:
        ``{"losses": [...], "evals": [...], "checkpoint": path, "tokens_per_s": float}``
        for the steps run in this call.
    """
    if not isinstance(model_config, DecoderConfig):
        raise TypeError(f"model_config must be a DecoderConfig, got {type(model_config).__name__}")
    if model_config.position == "learned" and config.seq_len > model_config.max_seq_len:
        raise ValueError(
            f"seq_len={config.seq_len} exceeds the model's max_seq_len="
            f"{model_config.max_seq_len} (learned positions)"
        )
    world = _setup_world(config)
    if config.batch_size % (world.size * config.grad_accum):
        raise ValueError(
            f"batch_size={config.batch_size} must be divisible by world size x grad_accum = "
            f"{world.size} x {config.grad_accum}"
        )
    out = Path(out)
    data = _Data(config, model_config)
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
        ckpt = load_checkpoint(resume, kind=DecoderConfig.kind)
        check_resume_configs(ckpt.config["model"], ckpt.config["train"], model_config, config)
        ckpt.load_into(model)
        state = ckpt.training_state()
        if state is None:
            raise ValueError(f"checkpoint {ckpt.path} has no training state (state.pt) to resume")
        optimizer.load_state_dict(state["optimizer"])
        per_rank = state["rng_per_rank"]
        set_rng_state(per_rank[world.rank] if len(per_rank) == world.size else per_rank[0])
        start = ckpt.step
    else:
        torch.manual_seed(config.seed * 7919 + world.rank)  # dropout differs across processes
    run_model: torch.nn.Module = torch.compile(model) if config.compile else model
    if world.size > 1:
        run_model = torch.nn.parallel.DistributedDataParallel(
            run_model, device_ids=[world.device.index] if world.device.type == "cuda" else None
        )
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
        if resume is not None:
            _rewrite_log(out / LOG, start)
        elif (out / LOG).exists():
            (out / LOG).unlink()
    log = (out / LOG).open("a") if world.main else None
    autocast = torch.autocast(world.device.type, dtype=torch.bfloat16, enabled=config.bf16)
    local = config.batch_size // world.size
    micro = local // config.grad_accum
    vocab = model_config.vocab_size
    losses: list[float] = []
    evals: list[dict[str, Any]] = []
    bar = None
    if progress and world.main:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=start, unit="step", dynamic_ncols=True)

    def write(record: dict[str, Any]) -> None:
        if log is not None:
            log.write(json.dumps(record) + "\n")
            log.flush()

    def evaluate(step: int) -> dict[str, Any]:
        model.eval()
        total = torch.zeros((), dtype=torch.float64)
        count = 0
        correct = 0
        with torch.no_grad(), autocast:
            for x, y in data.eval_batches():
                x, y = x.to(world.device), y.to(world.device)
                logits = run_model(x).float()  # (b, T, V)
                flat = logits.view(-1, vocab)  # (b*T, V)
                total += F.cross_entropy(flat, y.reshape(-1), ignore_index=IGNORE, reduction="sum")
                scored = y.reshape(-1) != IGNORE
                count += int(scored.sum())
                correct += int((flat.argmax(-1) == y.reshape(-1))[scored].sum())
        model.train()
        loss = float(total) / max(1, count)
        record = {"type": "eval", "step": step, "val_loss": loss, "val_tokens": count}
        if config.task == "text":
            record["val_bpb"] = loss / math.log(2)  # one token per byte
        else:
            record["val_acc"] = correct / max(1, count)
        return record

    def checkpoint(step: int, extra: dict[str, Any]) -> Path | None:
        rngs = [rng_state()]
        if world.size > 1:
            rngs = [None] * world.size
            dist.all_gather_object(rngs, rng_state())
        path = None
        if world.main:
            path = save_checkpoint(
                out,
                model=model,
                kind=DecoderConfig.kind,
                config={"model": model_config.to_dict(), "train": config.to_dict()},
                step=step,
                state={"optimizer": optimizer.state_dict(), "rng_per_rank": rngs},
                meta={"task": config.task, "world_size": world.size, **extra},
            )
        if world.size > 1:
            dist.barrier()
        return path

    model.train()
    ckpt_path = None
    tokens_per_step = config.batch_size * config.seq_len
    window_start, window_tokens = time.perf_counter(), 0
    run_start = time.perf_counter()
    paused = 0.0  # seconds spent evaluating and checkpointing: not training time
    completed = saved = start
    try:
        for step in range(start, config.steps):
            lr = lr_at(step, config, time.perf_counter() - run_start - paused)
            if world.size > 1 and config.time_limit:  # wall time differs: use process 0's
                shared = torch.tensor(lr, dtype=torch.float64)
                dist.broadcast(shared, src=0)
                lr = float(shared)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = data.batch(step)  # (B, T) global
            scored = int((y != IGNORE).sum())  # normalizer over the whole global batch
            x = x[world.rank * local : (world.rank + 1) * local].to(world.device)
            y = y[world.rank * local : (world.rank + 1) * local].to(world.device)
            step_loss = torch.zeros((), device=world.device)
            for i in range(config.grad_accum):
                xm, ym = x[i * micro : (i + 1) * micro], y[i * micro : (i + 1) * micro]
                sync = world.size == 1 or i == config.grad_accum - 1
                ctx = contextlib.nullcontext() if sync else run_model.no_sync()
                with ctx:
                    with autocast:
                        logits = run_model(xm)  # (b, T, V)
                    loss_sum = F.cross_entropy(
                        logits.float().view(-1, vocab),  # (b*T, V)
                        ym.reshape(-1),  # (b*T,)
                        ignore_index=IGNORE,
                        reduction="sum",
                    )
                    # DDP averages gradients over processes; scale back to a global mean.
                    loss = loss_sum * (world.size / max(1, scored))
                    loss.backward()
                step_loss += loss.detach() / world.size
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            completed = step + 1
            step_loss = _all_mean(step_loss, world) * world.size
            value = float(step_loss)
            losses.append(value)
            done = step + 1
            window_tokens += tokens_per_step
            now = time.perf_counter()
            trained = now - run_start - paused
            out_of_time = bool(config.time_limit) and trained >= config.time_limit
            if world.size > 1 and config.time_limit:  # every process stops at the same step
                flag = torch.tensor(float(out_of_time))
                dist.broadcast(flag, src=0)
                out_of_time = bool(flag)
            last = done == config.steps or out_of_time
            tps = window_tokens / max(now - window_start, 1e-9)
            if bar is not None:
                bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}")
                bar.update(1)
            if done % config.log_every == 0 or last:
                write(
                    {
                        "type": "train",
                        "step": done,
                        "loss": value,
                        "lr": lr,
                        "tokens_per_s": tps,
                        "elapsed_s": trained,
                    }
                )
                window_start, window_tokens = time.perf_counter(), 0
            extra: dict[str, Any] = {}
            pause_start = time.perf_counter()
            if done % config.eval_every == 0 or last:
                record = evaluate(done)
                evals.append(record)
                write(record)
                extra = {k: v for k, v in record.items() if k.startswith("val_")}
                if bar is not None:
                    bar.write(
                        f"step {done}: "
                        + ", ".join(f"{k} {v:.4f}" for k, v in extra.items() if k != "val_tokens")
                    )
            if (config.save_every and done % config.save_every == 0) or last:
                ckpt_path = checkpoint(done, extra)
                saved = done
            pause = time.perf_counter() - pause_start
            paused += pause
            window_start += pause  # tokens/s of training alone
            if out_of_time:
                break
    except KeyboardInterrupt:
        # Keep the work done so far; --resume continues from here. (One process only: the
        # others of a DDP run may not reach the collectives a checkpoint needs.)
        if world.size == 1 and completed > start and completed != saved:
            checkpoint(completed, {"interrupted": True})
        raise
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    elapsed = time.perf_counter() - run_start - paused
    return {
        "losses": losses,
        "evals": evals,
        "checkpoint": ckpt_path,
        "tokens_per_s": len(losses) * tokens_per_step / max(elapsed, 1e-9),
    }


# ---------------------------------------------------------------------- presets
def preset(name: str) -> tuple[DecoderConfig, TrainConfig]:
    """Named starting points; every field can be overridden (``multihead train --help``).

    - ``tiny``: seconds on a CPU (a smoke test of the whole pipeline).
    - ``small``: five minutes (``time_limit``) on a CPU; a byte-level model of Python source.
    """
    if name == "tiny":
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
    if name == "small":
        # Sized for a 5-minute CPU budget (``time_limit``; the schedule decays over that time):
        # ~1,000 steps of 16 x 256 bytes at ~13k tokens/s with bf16 autocast on 2 cores.
        # Chosen by 5-minute runs scored on all validation bytes (benchmarks/RESULTS.md):
        # RoPE, d_model 192 and 6 heads beat learned positions, 128/160/256 wide and 3 or 12
        # heads; the math backend with Muon on the block matrices took the AdamW run from 2.04
        # bits per byte to 1.70, a linear decay to 0 to 1.68, and lr 5e-3 / 8e-3 / 1.3e-2 to
        # 1.54 / 1.46 / 1.39 (2e-2: 1.68).
        # The math backend trains it 1.17x faster than SDPA under bf16 (benchmarks/models.py).
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
                bf16=True,
                time_limit=300.0,
            ),
        )
    raise ValueError(f"preset must be one of {PRESETS}, got {name!r}")


PRESETS = ("tiny", "small")
