"""What a run saves and restores: the weights, both configs, the optimizer state and every
process's RNG state (:mod:`multihead.checkpoint`: safetensors + JSON, ``torch.load`` with
``weights_only=True``, written atomically)."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from multihead.checkpoint import (
    load_checkpoint,
    remove_stale_temporaries,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from multihead.models import DecoderConfig, DecoderLM
from multihead.train.config import RESUMABLE_CHANGES, TrainConfig
from multihead.train.world import World, barrier, gather


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


def restore(
    resume: str | os.PathLike,
    model: DecoderLM,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    world: World,
) -> int:
    """Load the checkpoint ``resume`` into ``model`` and ``optimizer`` and this process's RNG;
    return its step. Its configs must match (:func:`check_resume_configs`).

    Every file read is checked against the checkpoint's SHA-256 manifest first, and process 0
    removes what killed saves left in the checkpoint's directory (saves into ``out`` do that
    too, but a run resumed elsewhere never saves into it).
    """
    if world.main:
        remove_stale_temporaries(resume)
    ckpt = load_checkpoint(resume, kind=DecoderConfig.kind, verify=True)
    check_resume_configs(ckpt.config["model"], ckpt.config["train"], model.config, config)
    ckpt.load_into(model)
    state = ckpt.training_state()
    if state is None:
        raise ValueError(f"checkpoint {ckpt.path} has no training state (state.pt) to resume")
    optimizer.load_state_dict(state["optimizer"])
    per_rank = state["rng_per_rank"]
    set_rng_state(per_rank[world.rank] if len(per_rank) == world.size else per_rank[0])
    return ckpt.step


def save(
    out: Path,
    model: DecoderLM,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    world: World,
    *,
    step: int,
    meta: dict[str, Any],
) -> Path | None:
    """Checkpoint step ``step`` into ``out`` (every process takes part; process 0 writes and
    gets the step directory, the others None)."""
    rngs = gather(rng_state(), world)
    path = None
    if world.main:
        path = save_checkpoint(
            out,
            model=model,
            kind=DecoderConfig.kind,
            config={"model": model.config.to_dict(), "train": config.to_dict()},
            step=step,
            state={"optimizer": optimizer.state_dict(), "rng_per_rank": rngs},
            meta={"task": config.task, "world_size": world.size, **meta},
        )
    barrier(world)
    return path
