"""Muon: momentum orthogonalized by a Newton-Schulz iteration, for hidden matrices, with packed
matrices orthogonalized block by block.

Muon (Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks",
https://kellerjordan.github.io/posts/muon/) keeps SGD momentum ``B`` for each 2-D weight and
steps along an approximately orthogonal matrix with the same singular vectors: five
iterations of the quintic ``X <- a X + b (X X^T) X + c (X X^T)^2 X`` with
``(a, b, c) = (3.4445, -4.7750, 2.0315)``, started from ``B / ||B||_F``, push every singular
value towards 1 (roughly into [0.7, 1.2]; exact convergence is traded for speed).

A packed parameter such as attention's ``[W_q; W_k; W_v]`` or SwiGLU's ``[gate; up]`` holds
several linear maps. Orthogonalizing the stack as one matrix couples them (one block's large
singular values shrink another's update); here each block of rows, as the parameter's
:class:`~multihead.roles.Role` lists them, is orthogonalized and scaled on its own, exactly
as if the maps were separate parameters. Without blocks this is ``torch.optim.Muon`` (same
defaults, same bfloat16 iteration, same learning-rate adjustments), which the tests check.

Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.randn(12, 4))                # [W_q; W_k; W_v], 4 rows each
    >>> opt = Muon([{"params": [w], "row_blocks": [(4, 4, 4)]}], lr=0.1,
    ...            adjust_lr_fn="match_rms_adamw")
    >>> w.grad = torch.randn(12, 4)
    >>> opt.step()
    >>> o = newton_schulz(torch.randn(6, 6))
    >>> bool(torch.linalg.svdvals(o.float()).max() < 1.3)         # roughly orthogonal
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from multihead import _checks

# Jordan et al. 2024: coefficients chosen to maximize the slope at zero, so that small singular
# values grow fast, at the price of not converging exactly to 1.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
ADJUST_LR = (None, "original", "match_rms_adamw")
NS_DTYPES = (torch.bfloat16, torch.float32, torch.float64)


def newton_schulz(
    g: torch.Tensor,
    *,
    steps: int = NS_STEPS,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = 1e-7,
    dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:
    """Approximately orthogonalize a 2-D matrix ``g`` ``(m, n)``: the same singular vectors,
    singular values near 1. Runs in ``dtype`` (bfloat16, as Jordan et al. do; the iteration
    is robust to it) and returns that dtype."""
    if g.dim() != 2:
        raise ValueError(f"g has shape {tuple(g.shape)} but a 2-D matrix is expected")
    a, b, c = coefficients
    x = g.to(dtype)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T  # (n, m): iterate on the smaller Gram matrix
    # ||X||_F >= ||X||_2, so dividing by it puts every singular value in [0, 1], where the
    # polynomial pushes them towards 1.
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T  # (m, m) or (n, n)
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b G + c G^2
        x = torch.addmm(x, poly, x, beta=a)  # a X + (b G + c G^2) X
    return x.T if tall else x


def adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: Sequence[int]) -> float:
    """The step size for one matrix of ``shape`` ``(A, B)``: ``"original"`` (or None) scales
    by ``sqrt(max(1, A / B))`` (Jordan et al.); ``"match_rms_adamw"`` by
    ``0.2 sqrt(max(A, B))``, which gives the update the RMS of an AdamW update, so both can
    share one learning rate and weight decay (Liu et al. 2025, "Muon is Scalable for LLM
    Training")."""
    rows, cols = shape[0], shape[1]
    if adjust_lr_fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    return lr * math.sqrt(max(1.0, rows / cols))


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters, with per-block orthogonalization of packed matrices.

    Args:
        params: parameters or param groups (dicts). A group may carry ``"row_blocks"``: one
            entry per parameter, None (one matrix) or the row count of each block, top to
            bottom (``make_optimizer`` fills it from the parameters' roles).
        lr: learning rate.
        weight_decay: decoupled weight decay: each step multiplies the weight by
            ``1 - lr * weight_decay``.
        momentum: momentum factor mu.
        nesterov: step along ``g + mu B`` (Nesterov) rather than ``B``.
        ns_coefficients, ns_steps, eps: the Newton-Schulz iteration (:func:`newton_schulz`).
        adjust_lr_fn: ``None``/``"original"`` or ``"match_rms_adamw"`` (:func:`adjusted_lr`),
            applied per block.
        ns_dtype: the dtype of the Newton-Schulz iteration: bfloat16 as Jordan et al. and
            ``torch.optim.Muon`` (fast on GPUs), or float32 where bfloat16 matmuls are slow
            (CPUs without native bfloat16 emulate them: on this project's AMD EPYC the small
            preset's Muon step took 3.7 s in bfloat16 and 0.1 s in float32). It describes
            the machine, not the run: a loaded state dict keeps this optimizer's.

    The momentum buffer ``B <- mu B + (1 - mu) g`` is the whole parameter's, so its state
    dict matches ``torch.optim.Muon``'s and a run started with either resumes with the other.
    """

    def __init__(
        self,
        params: Any,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        eps: float = 1e-7,
        ns_steps: int = NS_STEPS,
        adjust_lr_fn: str | None = None,
        ns_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        _checks.require_number("lr", lr, minimum=0.0)
        _checks.require_number("weight_decay", weight_decay, minimum=0.0)
        _checks.require_number("momentum", momentum, minimum=0.0, maximum=1.0)
        _checks.require_bool("nesterov", nesterov)
        _checks.require_int("ns_steps", ns_steps, minimum=1)
        _checks.require_choice("adjust_lr_fn", adjust_lr_fn, ADJUST_LR)
        if ns_dtype not in NS_DTYPES:
            raise ValueError(f"ns_dtype must be one of {NS_DTYPES}, got {ns_dtype!r}")
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_coefficients": tuple(ns_coefficients),
            "eps": eps,
            "ns_steps": ns_steps,
            "adjust_lr_fn": adjust_lr_fn,
            "row_blocks": None,
            "ns_dtype": str(ns_dtype).removeprefix("torch."),  # a name: state dicts stay JSON
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        blocks = group["row_blocks"]
        blocks = [None] * len(group["params"]) if blocks is None else list(blocks)
        if len(blocks) != len(group["params"]):
            raise ValueError(
                f"row_blocks has {len(blocks)} entries but the group has "
                f"{len(group['params'])} parameters; give one (None or row counts) per parameter"
            )
        blocks = [rows or None for rows in blocks]  # () packs nothing: a matrix with no rows
        for i, (p, rows) in enumerate(zip(group["params"], blocks)):
            if p.dim() != 2:
                raise ValueError(
                    f"Muon optimizes 2-D matrices, but parameter {i} of the group has shape "
                    f"{tuple(p.shape)}; give it to AdamW"
                )
            if rows is not None and (sum(rows) != p.shape[0] or min(rows) < 1):
                raise ValueError(
                    f"row_blocks[{i}]={tuple(rows)} does not split the {p.shape[0]} rows of a "
                    f"{tuple(p.shape)} parameter into positive blocks"
                )
        group["row_blocks"] = [None if rows is None else tuple(rows) for rows in blocks]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load momentum buffers and hyper-parameters; the row blocks stay those of the
        parameters this optimizer was built with (they describe the model, not the run), and
        the iteration's dtype this optimizer's (it describes the machine)."""
        kept = [(g["row_blocks"], g["ns_dtype"]) for g in self.param_groups]
        super().load_state_dict(state_dict)
        for group, (rows, ns_dtype) in zip(self.param_groups, kept):
            group["row_blocks"], group["ns_dtype"] = rows, ns_dtype

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p, rows in zip(group["params"], group["row_blocks"]):
                if p.grad is None or p.numel() == 0:  # e.g. a layer with no heads left
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - mu)  # B <- mu B + (1 - mu) g
                update = p.grad.lerp(buf, mu) if group["nesterov"] else buf
                p.mul_(1 - lr * group["weight_decay"])
                rows = rows or (p.shape[0],)
                for u, w in zip(update.split(rows), p.split(rows)):  # (rows_i, n) views
                    o = newton_schulz(
                        u,
                        steps=group["ns_steps"],
                        coefficients=group["ns_coefficients"],
                        eps=group["eps"],
                        dtype=getattr(torch, group["ns_dtype"]),
                    )
                    w.add_(o, alpha=-adjusted_lr(lr, group["adjust_lr_fn"], w.shape))
        return loss
