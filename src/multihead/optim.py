"""Optimizers for :mod:`multihead.train`: AdamW, or Muon on the hidden matrices with AdamW on
the rest, grouped by the roles the modules declare for their parameters
(:mod:`multihead.roles`), never by parameter names.

Muon (Jordan et al. 2024; :mod:`multihead.muon`) orthogonalizes each hidden matrix's momentum
with a few Newton-Schulz iterations before the update. It is meant for the hidden matrices
only: embeddings, the output head, biases and norm gains keep AdamW. With
``adjust_lr_fn="match_rms_adamw"`` (Liu et al. 2025, "Muon is Scalable for LLM Training") the
update has the RMS of an AdamW update, so both parts share one learning rate and one weight
decay, and the learning-rate schedule sets both.

``"muon"`` orthogonalizes each projection of a packed matrix (``[W_q; W_k; W_v]``,
``[gate; up]``) on its own; ``"muon_whole"`` treats every parameter as one matrix, as
``torch.optim.Muon`` does (kept to measure the difference).

Example:
    >>> import torch
    >>> from multihead.models import DecoderConfig, DecoderLM
    >>> model = DecoderLM(DecoderConfig(vocab_size=16, max_seq_len=8, d_model=16,
    ...                                 num_layers=1, num_heads=2))
    >>> opt = make_optimizer(model, "muon", lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
    >>> [len(g["params"]) for g in opt.param_groups]  # Muon; AdamW decay; no decay
    [4, 1, 10]
    >>> opt.param_groups[0]["row_blocks"]       # in_proj [W_q; W_k; W_v], out_proj, up, down
    [(16, 16, 16), None, None, None]
"""

from __future__ import annotations

from typing import Any

import torch

from multihead.muon import Muon
from multihead.roles import parameter_roles

OPTIMIZERS = ("adamw", "muon", "muon_whole")


class Combined:
    """Several optimizers stepped as one: ``param_groups`` lists all their groups (so a
    schedule sets every learning rate), and the state dict holds each one's state in order."""

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for o in self.optimizers for g in o.param_groups]

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"combined": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        parts = state.get("combined") if isinstance(state, dict) else None
        if not isinstance(parts, list) or len(parts) != len(self.optimizers):
            raise ValueError(
                f"optimizer state does not match: expected a combined state of "
                f"{len(self.optimizers)} optimizers, got keys {sorted(state)[:5]}"
            )
        for o, s in zip(self.optimizers, parts, strict=True):
            o.load_state_dict(s)


def make_optimizer(
    model: torch.nn.Module,
    name: str,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
) -> torch.optim.Optimizer | Combined:
    """AdamW (``"adamw"``), or Muon on the hidden matrices plus AdamW on the rest (``"muon"``,
    per-projection; ``"muon_whole"``, whole parameters). Matrices and embeddings decay;
    biases and norm gains do not (decaying them only fights the normalization).

    Muon's Newton-Schulz iteration runs in bfloat16 on CUDA and in float32 elsewhere (CPUs
    without native bfloat16 run it some 30x slower; see :class:`~multihead.muon.Muon`).

    Groups follow :func:`multihead.roles.parameter_roles`, so wrapping or renaming the model
    (``nn.Sequential(model)``, DDP, ``torch.compile``) gives the same groups.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    hidden, row_blocks, decay, no_decay = [], [], [], []
    for _, p, role in parameter_roles(model):
        if not p.requires_grad:
            continue
        if name != "adamw" and role.kind == "matrix" and p.dim() == 2:
            hidden.append(p)
            row_blocks.append(role.blocks if name == "muon" else None)
        elif role.decays:
            decay.append(p)
        else:
            no_decay.append(p)
    adam_groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    adam = torch.optim.AdamW([g for g in adam_groups if g["params"]], lr=lr, betas=betas)
    if name == "adamw":
        return adam
    if not hidden:
        raise ValueError(
            f"optimizer={name!r} found no hidden matrices (parameters with role 'matrix') in "
            f"{type(model).__name__}; use 'adamw'"
        )
    muon = Muon(
        [{"params": hidden, "row_blocks": row_blocks}],
        lr=lr,
        weight_decay=weight_decay,
        adjust_lr_fn="match_rms_adamw",
        ns_dtype=torch.bfloat16 if hidden[0].is_cuda else torch.float32,
    )
    return Combined(muon, adam)
