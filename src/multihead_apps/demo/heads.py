"""The head analysis the demo needs: scores on repeated random tokens, the loss on the
repeated half under a head mask, gradient importance, and physical pruning.

Legend: B batch, T sequence length, L layers, H heads per layer, n the repeat period.

These are the demo's own minimal versions (the library's ``multihead.analysis`` scores,
``gradient_importance`` and ``prune_heads`` are the general ones). Scores follow
TransformerLens's ``head_detector`` "mul" score: the share of a head's attention that falls on
the expected query-key pairs, averaged over the queries that have one.

Example:
    >>> import torch
    >>> from multihead.models import DecoderConfig, DecoderLM
    >>> model = DecoderLM(DecoderConfig(vocab_size=16, d_model=16, num_layers=2, num_heads=2,
    ...                                 ffn_dim=0)).eval()
    >>> probe = repeated_tokens(16, 12, batch_size=4, seed=0)     # (B, 2n) = (4, 12)
    >>> scores = head_scores(model, probe)
    >>> sorted(scores), tuple(scores["induction"].shape)          # (L, H)
    (['duplicate_token', 'induction', 'previous_token'], (2, 2))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from multihead import _checks
from multihead.data import IGNORE, SyntheticTask
from multihead.models import DecoderLM
from multihead.viz.from_model import observe_weights

Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]


def task_batches(
    task: str, *, vocab_size: int, seq_len: int, batch_size: int, count: int, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` held-out ``(x, y)`` batches of ``task``, both ``(B, T)``."""
    _checks.require_int("count", count, minimum=1)
    data = SyntheticTask(task, vocab_size=vocab_size, seq_len=seq_len)
    g = torch.Generator().manual_seed(seed * 1_000_003 + 2**41)  # apart from training's
    return [data.batch("val", batch_size=batch_size, generator=g) for _ in range(count)]


def repeated_tokens(vocab_size: int, seq_len: int, *, batch_size: int, seed: int) -> torch.Tensor:
    """``(B, 2n)`` with ``n = seq_len // 2``: random tokens ``A`` followed by ``A`` again, the
    probe TransformerLens scores induction heads on."""
    n = seq_len // 2
    _checks.require_int("seq_len // 2", n, minimum=2)
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, vocab_size, (batch_size, n), generator=g)  # (B, n)
    return torch.cat((a, a), dim=1)  # (B, 2n)


def head_scores(model: nn.Module, probe: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"previous_token", "induction", "duplicate_token"}`` -> ``(L, H)`` scores of
    ``model``'s heads on ``probe`` ``(B, 2n)`` (:func:`repeated_tokens`); see
    :func:`scores_from_weights`."""
    return scores_from_weights(observe_weights(model.eval(), probe))


def scores_from_weights(weights: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scores from per-layer weights ``(B, H, 2n, 2n)`` on repeated random tokens:

    - previous_token: attention of query i on key i - 1 (i >= 1);
    - induction: of query i in the second copy on key i - n + 1, the token after the earlier
      occurrence of the current token (Olsson et al. 2022);
    - duplicate_token: of query i in the second copy on key i - n, the earlier occurrence.

    Each is the mean over the batch and those queries, so 1.0 means all of the attention is
    on the expected key.
    """
    t = weights[0].shape[-1]
    n = t // 2
    q = torch.arange(1, t)
    second = torch.arange(n, t)
    pairs = {
        "previous_token": (q, q - 1),
        "induction": (second, second - n + 1),
        "duplicate_token": (second, second - n),
    }
    return {
        name: torch.stack([w[:, :, i, j].mean(dim=(0, 2)) for w in weights])  # (L, H)
        for name, (i, j) in pairs.items()
    }


def repeated_half_loss(
    model: DecoderLM, batches: Batches, head_mask: torch.Tensor | None = None
) -> float:
    """Mean next-token loss (nats) over the scored targets of ``batches`` (the second copy of
    ``induction_random``), with ``head_mask`` ``(L, H)`` (1 keeps a head, 0 removes it)."""
    total, tokens = 0.0, 0
    with torch.no_grad():
        for x, y in batches:
            logits = model(x, head_mask=head_mask)  # (B, T, V)
            total += float(
                F.cross_entropy(
                    logits.flatten(0, 1),  # (B*T, V)
                    y.flatten(),  # (B*T,)
                    ignore_index=IGNORE,
                    reduction="sum",
                )
            )
            tokens += int((y != IGNORE).sum())
    if tokens == 0:
        raise ValueError("the batches have no scored targets: nothing to measure")
    return total / tokens


def gradient_importance(model: DecoderLM, batches: Batches) -> torch.Tensor:
    """``(L, H)`` importance I_h = E_x |dL_x / d xi_h| (Michel, Levy and Neubig 2019): xi is
    the head mask at 1, L_x one example's mean loss on its scored targets; the absolute value
    is taken per example (a ``(B, L, H)`` mask gives every example its own derivative), then
    each layer is divided by its L2 norm, as Michel et al. do."""
    cfg = model.config
    if not cfg.uniform_heads:
        raise ValueError("gradient_importance needs an unpruned model (every layer all heads)")
    total = torch.zeros(cfg.num_layers, cfg.num_heads)
    count = 0
    model.eval()
    for x, y in batches:
        mask = torch.ones(x.shape[0], cfg.num_layers, cfg.num_heads, requires_grad=True)
        logits = model(x, head_mask=mask)  # (B, T, V)
        nll = F.cross_entropy(
            logits.transpose(1, 2), y, ignore_index=IGNORE, reduction="none"
        )  # (B, T)
        per_example = nll.sum(1) / (y != IGNORE).sum(1).clamp(min=1)  # (B,)
        (grad,) = torch.autograd.grad(per_example.sum(), mask)  # (B, L, H)
        total += grad.abs().sum(0)
        count += x.shape[0]
    if count == 0:
        raise ValueError("gradient_importance got no batches")
    importance = total / count  # (L, H)
    return importance / importance.norm(dim=1, keepdim=True).clamp(min=1e-12)


def keep_mask(num_layers: int, num_heads: int, keep: Mapping[int, Sequence[int]]) -> torch.Tensor:
    """``(L, H)`` head mask: 1 for the heads ``keep`` lists per layer, 0 elsewhere."""
    mask = torch.zeros(num_layers, num_heads)
    for layer, heads in keep.items():
        mask[layer, list(heads)] = 1.0
    return mask


def prune_to(model: DecoderLM, keep: Mapping[int, Sequence[int]]) -> DecoderLM:
    """Remove, in place, every head of an unpruned model that ``keep`` does not list
    (``{layer: [head ids]}``, every layer at least one), through ``select_heads``, and record
    the kept heads in ``config.layer_heads`` so the model saves and reloads pruned."""
    cfg = model.config
    if not cfg.uniform_heads:
        raise ValueError("prune_to needs an unpruned model (every layer all heads)")
    layer_heads = []
    for layer, block in enumerate(model.blocks):
        heads = sorted(keep.get(layer, ()))
        if not heads:
            raise ValueError(f"keep[{layer}] is empty: a layer must keep at least one head")
        block.attn.select_heads(heads)
        layer_heads.append(heads)
    model.config = type(cfg).from_dict({**cfg.to_dict(), "layer_heads": layer_heads})
    return model
