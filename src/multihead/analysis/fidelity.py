"""Embedding fidelity: how far removing heads moves a sentence encoder's embeddings, and which
heads matter for keeping them.

The objective is ``1 - cos(e(m), e(1))``: the cosine between a sentence's embedding with head
mask ``m`` and its unpruned embedding (mean-pooled, L2-normalised, as
:func:`multihead.convert.sentence_embeddings`). Its gradient through the head mask is exactly
zero at the unpruned model: the loss is 0 there, its minimum. Michel et al. 2019's
``|dL/dm_h|`` therefore ranks nothing at the start (``fidelity_importance`` measures it). What
does carry first-order information is how much each head moves the embedding:
removing head ``h`` (``m_h: 1 -> 0``) moves ``e`` by about ``-J_h = -de/dm_h``, and for a unit
``e`` the loss becomes ``1 - cos ~ |P J_h|^2 / 2``, where ``P`` projects orthogonally to ``e``
(moving along ``e`` only rescales it, which normalisation undoes). :func:`jacobian_importance`
estimates ``E_x |P J_h|`` with one backward pass per batch: the gradient through the head mask
of ``v . e(m)`` for a random Gaussian direction ``v`` orthogonal to each sentence's embedding
is ``v . P J_h``, whose absolute value (taken per sentence, as Michel et al. take it per
example) averages to ``sqrt(2/pi) |P J_h|``.

Legend: N sentences, B batch, T tokens, E width, L layers, H heads per layer.

Example:
    >>> import torch
    >>> from multihead.models import Encoder, EncoderConfig
    >>> _ = torch.manual_seed(0)
    >>> enc = Encoder(EncoderConfig(vocab_size=30, d_model=16, num_layers=2, num_heads=4)).eval()
    >>> batches = [(torch.randint(0, 30, (3, 5)), torch.ones(3, 5, dtype=torch.bool))]
    >>> refs = reference_embeddings(enc, batches)
    >>> mean_cosine(enc, batches, refs)
    1.0
    >>> imp = jacobian_importance(enc, batches)                  # (L, H)
    >>> imp.shape, bool((imp > 0).all())
    (torch.Size([2, 4]), True)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from multihead import _checks

Batch = tuple[torch.Tensor, torch.Tensor]
"""``(ids (B, T) int64, real (B, T) bool)``: token ids and True = real token."""


def embedding_batches(tokenizer, sentences: Sequence[str], *, batch_size: int = 32) -> list[Batch]:
    """Tokenize ``sentences`` (in the order given) into batches of ``batch_size``, each padded
    to its own longest sentence. Truncated to the tokenizer's ``model_max_length``."""
    _checks.require_int("batch_size", batch_size, minimum=1)
    if not sentences:
        raise ValueError("sentences is empty; expected at least one sentence")
    out = []
    for start in range(0, len(sentences), batch_size):
        enc = tokenizer.encode(
            list(sentences[start : start + batch_size]), max_length=tokenizer.model_max_length
        )
        t = int(enc.lengths.max())
        out.append((enc.ids[:, :t], enc.attention_mask[:, :t]))  # (B, T), (B, T)
    return out


def embed(model: torch.nn.Module, batch: Batch, head_mask=None) -> torch.Tensor:
    """``(B, E)`` normalised mean-pooled embeddings of one batch, differentiable through
    ``head_mask`` (any form :meth:`Encoder.forward` takes: ``(L, H)``, ``(B, L, H)``...)."""
    ids, real = batch
    hidden = model.hidden_states(ids, padding_mask=real, head_mask=head_mask)  # (B, T, E)
    w = real.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    pooled = (hidden * w).sum(dim=1) / w.sum(dim=1).clamp_min(1e-9)  # (B, E)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


def _check_batches(batches: Sequence[Batch]) -> None:
    if not batches:
        raise ValueError("batches is empty; expected at least one (ids, real) batch")


@torch.no_grad()
def reference_embeddings(
    model: torch.nn.Module, batches: Sequence[Batch], head_mask=None
) -> list[torch.Tensor]:
    """Per batch, the ``(B, E)`` embeddings (the targets fidelity is measured against)."""
    _check_batches(batches)
    return [embed(model, b, head_mask) for b in batches]


@torch.no_grad()
def cosines(
    model: torch.nn.Module,
    batches: Sequence[Batch],
    references: Sequence[torch.Tensor],
    head_mask=None,
) -> torch.Tensor:
    """``(N,)`` cosine of each sentence's embedding (under ``head_mask``) to its reference."""
    _check_batches(batches)
    if len(references) != len(batches):
        raise ValueError(f"references has {len(references)} entries for {len(batches)} batches")
    return torch.cat(
        [(embed(model, b, head_mask) * r).sum(-1) for b, r in zip(batches, references)]
    )


def mean_cosine(
    model: torch.nn.Module,
    batches: Sequence[Batch],
    references: Sequence[torch.Tensor],
    head_mask=None,
) -> float:
    """The mean over sentences of :func:`cosines` (1.0 = embeddings unchanged)."""
    return round(float(cosines(model, batches, references, head_mask).mean()), 6)


def _full_mask(model: torch.nn.Module, head_mask: torch.Tensor | None) -> torch.Tensor:
    cfg = model.config
    if cfg.layer_heads is not None:
        raise ValueError(
            "importance is computed on the unpruned model with head masks; got a pruned model "
            f"(layer_heads={cfg.layer_heads})"
        )
    shape = (cfg.num_layers, cfg.num_heads)
    if head_mask is None:
        return torch.ones(shape)
    _checks.require_tensor("head_mask", head_mask)
    if tuple(head_mask.shape) != shape:
        raise ValueError(f"head_mask must be (L, H) = {shape}, got {tuple(head_mask.shape)}")
    return head_mask.detach().float()


def _per_example_grad_abs(model, batches, head_mask, loss_of) -> torch.Tensor:
    """``(L, H)``: the mean over sentences of ``|d loss_i / d m_h|`` at ``head_mask``, through
    :func:`~multihead.analysis.gradient_importance` (per-example gates, no normalisation);
    heads already masked to 0 get 0."""
    from multihead.analysis.importance import gradient_importance

    base = _full_mask(model, head_mask)

    def loss_fn(m: torch.nn.Module, item: tuple[int, Batch]) -> torch.Tensor:
        i, batch = item
        mask = base.to(next(m.parameters()).dtype)
        return loss_of(i, batch, embed(m, batch, mask))  # (B,)

    numbered = list(enumerate(batches))
    per_layer = gradient_importance(model, numbered, loss_fn, normalize=False, progress=False)
    return torch.stack(per_layer) * (base != 0)  # (L, H); removed heads matter no more


def jacobian_importance(
    model: torch.nn.Module,
    batches: Sequence[Batch],
    *,
    head_mask: torch.Tensor | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """``(L, H)``: ``E_x |v_x . P_x de_x/dm_h|`` under ``head_mask`` (default all ones), ``v_x``
    a Gaussian direction orthogonal to sentence x's embedding (see the module docstring: about
    ``0.8 |P J_h|``, the first-order size of the move removing head h causes). Masked heads
    get 0. One forward and backward pass per batch."""
    _check_batches(batches)
    g = torch.Generator().manual_seed(seed)

    def loss_of(_: int, batch: Batch, e: torch.Tensor) -> torch.Tensor:
        v = torch.randn(e.shape, generator=g).to(e)  # (B, E)
        ref = e.detach()
        v = v - (v * ref).sum(-1, keepdim=True) * ref  # orthogonal to each embedding
        return (v * e).sum(-1)  # (B,)

    return _per_example_grad_abs(model, batches, head_mask, loss_of)


def fidelity_importance(
    model: torch.nn.Module,
    batches: Sequence[Batch],
    references: Sequence[torch.Tensor],
    *,
    head_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(L, H)``: Michel et al. 2019's ``E_x |d(1 - cos(e_x(m), ref_x))/dm_h|`` at
    ``head_mask``. Zero (to rounding) at the unpruned model with its own embeddings as
    references; see the module docstring."""
    _check_batches(batches)
    if len(references) != len(batches):
        raise ValueError(f"references has {len(references)} entries for {len(batches)} batches")

    def loss_of(i: int, _: Batch, e: torch.Tensor) -> torch.Tensor:
        return 1.0 - (e * references[i]).sum(-1)  # (B,)

    return _per_example_grad_abs(model, batches, head_mask, loss_of)
