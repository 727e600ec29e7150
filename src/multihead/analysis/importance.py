"""Head importance: how much the loss depends on each attention head.

Legend: B batch, T sequence length, V vocabulary, L attention layers (numbered as
:func:`~multihead.analysis.layers.attention_layers` numbers them), H_l layer l's query heads.

Two measures, both returning one ``(H_l,)`` float tensor per layer, heads in the order the
layer holds them now (position ``i`` of layer ``l`` is original head
``config.heads_of(l).query[i]`` in a pruned model):

- :func:`gradient_importance` (Michel, Levy and Neubig 2019, "Are sixteen heads really better
  than one?", eq. 2): a gate ``xi_h = 1`` multiplies every head's output and
  ``I_h = E_x |dL(x)/d xi_h|``. The absolute value is taken **per example**: each example gets
  its own gate (a ``(B, H_l)`` head mask), so gradients of different examples cannot cancel
  before ``|.|``; then the mean over every example of every batch. Optionally each layer's
  scores are divided by their L2 norm, as Michel et al. do before pruning across layers.
- :func:`ablation_importance`: the mean loss with one head removed minus the mean loss with
  every head (``"zero"``: the head's output is 0; ``"mean"``: replaced by its mean output over
  the data, which keeps the head's constant contribution (Wang et al. 2022 use mean ablation
  to find circuits)).

The gates are injected with forward pre-hooks on each
:class:`~multihead.attention.MultiHeadAttention` (multiplied into any ``head_mask`` the caller
passes), so any model built from MultiHeadAttention works, not only DecoderLM/Encoder.

A loss function is ``loss_fn(model, batch) -> loss``: either per-example losses ``(B,)`` or a
scalar taken to be the mean over the batch's B examples (it is multiplied by B to recover the
per-example gradients). The default, for a language model (``model(tokens) -> (B, T, V)``),
is next-token cross-entropy averaged over each example's scored tokens: ``batch`` is ``(x,
y)`` with targets ``y`` (``-100`` = not scored), or a ``(B, T)`` token tensor scored on its
own next tokens.

Example:
    >>> import torch
    >>> from multihead.models import DecoderConfig, DecoderLM
    >>> _ = torch.manual_seed(0)
    >>> model = DecoderLM(DecoderConfig(vocab_size=16, d_model=16, num_layers=2, num_heads=4))
    >>> batches = [torch.randint(0, 16, (3, 8)) for _ in range(2)]      # (B, T) tokens
    >>> scores = gradient_importance(model, batches, progress=False)
    >>> [tuple(s.shape) for s in scores], round(float(scores[0].norm()), 6)
    ([(4,), (4,)], 1.0)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from multihead import _checks
from multihead.analysis.layers import attention_layers
from multihead.attention import MultiHeadAttention
from multihead.data import IGNORE

LossFn = Callable[[nn.Module, Any], torch.Tensor]
ABLATIONS = ("zero", "mean")


def lm_loss(model: nn.Module, batch: Any) -> torch.Tensor:
    """Per-example next-token cross-entropy ``(B,)``: the mean over each example's scored
    targets (``-100`` is not scored; an example with none scores 0). ``batch`` is ``(x, y)``
    (``(B, T)`` tokens and targets) or a ``(B, T)`` tensor, then scored as ``x[:, :-1]`` ->
    ``x[:, 1:]``."""
    x, y = _lm_pair(batch)
    device = _device(model)
    x, y = x.to(device), y.to(device)
    logits = model(x)  # (B, T, V)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        raise TypeError(
            "the default loss expects model(tokens) to return logits (B, T, V); pass loss_fn "
            "for other models"
        )
    b, t, v = logits.shape
    token_loss = F.cross_entropy(
        logits.float().reshape(b * t, v),  # (B*T, V)
        y.reshape(b * t),  # (B*T,)
        ignore_index=IGNORE,
        reduction="none",
    ).view(b, t)  # (B, T)
    scored = (y != IGNORE).sum(dim=1).clamp(min=1)  # (B,)
    return token_loss.sum(dim=1) / scored  # (B,)


def _lm_pair(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        x, y = batch
        _checks.require_tensor("batch[0]", x)
        _checks.require_tensor("batch[1]", y)
        if x.shape != y.shape or x.dim() != 2:
            raise ValueError(
                f"batch (x, y) has shapes {tuple(x.shape)} and {tuple(y.shape)}; the default "
                "loss expects tokens and targets of the same shape (B, T)"
            )
        return x, y
    if isinstance(batch, torch.Tensor) and batch.dim() == 2 and batch.shape[1] >= 2:
        return batch[:, :-1], batch[:, 1:]  # (B, T-1) each
    raise TypeError(
        "the default loss takes batches (x, y) of (B, T) token tensors or a (B, T) token tensor "
        f"with T >= 2, got {_describe(batch)}; pass loss_fn(model, batch) for other data"
    )


def _describe(batch: Any) -> str:
    if isinstance(batch, torch.Tensor):
        return f"a tensor of shape {tuple(batch.shape)}"
    return type(batch).__name__


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return torch.device("cpu") if p is None else p.device


def _layers(model: nn.Module) -> list[MultiHeadAttention]:
    layers = [m for _, m in attention_layers(model)]
    if not layers:
        raise ValueError(
            f"model {type(model).__name__} has no MultiHeadAttention layer: there are no heads "
            "to score"
        )
    return layers


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout, no DropHead) inside, the previous modes restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.train(mode)


def _progress(items: Iterable, enabled: bool, desc: str, total: int | None = None) -> Iterable:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, total=total, leave=False, dynamic_ncols=True)


def _checked_loss(loss: object, index: int) -> tuple[torch.Tensor, int | None]:
    """(summed loss, examples or None for a scalar) after checking it is finite."""
    if not isinstance(loss, torch.Tensor) or loss.dim() > 1:
        raise TypeError(
            f"loss_fn returned {_describe(loss)} for batch {index}; expected per-example "
            "losses (B,) or a scalar"
        )
    if not bool(torch.isfinite(loss).all()):
        raise ValueError(
            f"the loss of batch {index} is not finite ({loss.detach().flatten()[:8].tolist()}); "
            "head importance needs finite losses: check that batch and the model's weights"
        )
    return loss.sum(), (loss.shape[0] if loss.dim() == 1 else None)


class _Gates:
    """Forward pre-hooks giving every call of each layer a fresh gate ``(B, H_l)`` of ones
    (requires grad), multiplied into the call's own ``head_mask``."""

    def __init__(self, layers: list[MultiHeadAttention]) -> None:
        self.layers = layers
        self.gates: list[list[torch.Tensor]] = [[] for _ in layers]
        self.handles = [
            m.register_forward_pre_hook(self._hook(i), with_kwargs=True)
            for i, m in enumerate(layers)
        ]

    def _hook(self, i: int):
        def hook(module: MultiHeadAttention, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            query = args[0] if args else kwargs["query"]
            unpadded = kwargs.get("unpadded")  # query (N, E): the real tokens of (B, T)
            batch = query.shape[0] if unpadded is None else unpadded.batch
            dtype = module.out_proj.weight.dtype
            gate = torch.ones(
                batch, module.num_heads, dtype=dtype, device=query.device
            ).requires_grad_(True)  # (B, H_l)
            self.gates[i].append(gate)
            given = kwargs.get("head_mask")
            kwargs["head_mask"] = gate if given is None else gate * given
            return args, kwargs

        return hook

    def take(self) -> list[list[torch.Tensor]]:
        gates, self.gates = self.gates, [[] for _ in self.layers]
        return gates

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def gradient_importance(
    model: nn.Module,
    batches: Iterable[Any],
    loss_fn: LossFn | None = None,
    *,
    normalize: bool = True,
    progress: bool = True,
) -> list[torch.Tensor]:
    """Michel et al. (2019) head importance ``I_h = E_x |dL(x)/d xi_h|`` per layer.

    Args:
        model: any module built from MultiHeadAttention; scored in eval mode (restored after).
        batches: an iterable of batches, each passed to ``loss_fn`` (see the module doc).
        loss_fn: ``loss_fn(model, batch)`` -> per-example losses ``(B,)`` or their mean;
            default :func:`lm_loss`.
        normalize: divide each layer's scores by their L2 norm (Michel et al.'s
            normalization), so layers compare on one scale.
        progress: a tqdm bar over the batches.

    Returns:
        ``[(H_l,) float32 tensor per layer]``, heads in the layer's current order.

    Raises:
        ValueError: a model without MultiHeadAttention, no batches, a non-finite loss (the
            batch is named).
    """
    _checks.require_bool("normalize", normalize)
    layers = _layers(model)
    loss_fn = lm_loss if loss_fn is None else loss_fn
    totals = [torch.zeros(m.num_heads, dtype=torch.float64) for m in layers]
    examples = 0
    gates = _Gates(layers)
    try:
        with evaluating(model):
            for index, batch in enumerate(_progress(batches, progress, "importance")):
                loss, count = _checked_loss(loss_fn(model, batch), index)
                per_layer = gates.take()
                flat = [g for calls in per_layer for g in calls]
                if not flat:
                    raise ValueError("loss_fn did not run the model's attention layers")
                grads = torch.autograd.grad(loss, flat, allow_unused=True)
                it = iter(grads)
                batch_size = flat[0].shape[0]
                scale = 1.0 if count is not None else float(batch_size)  # mean -> per example
                for i, calls in enumerate(per_layer):
                    parts = [g for g in (next(it) for _ in calls) if g is not None]
                    if parts:
                        g = torch.stack(parts).sum(0)  # (B, H_l): one gate used in every call
                        totals[i] += (g.abs() * scale).sum(0).double().cpu()
                examples += batch_size if count is None else count
    finally:
        gates.remove()
    if examples == 0:
        raise ValueError("batches yielded no batches: there is nothing to score heads on")
    scores = [(t / examples).float() for t in totals]
    if normalize:
        scores = [s / s.norm() if s.numel() and s.norm() > 0 else s for s in scores]
    return scores


def _mean_outputs(
    model: nn.Module, layers: list[MultiHeadAttention], batches: list, loss_fn: LossFn
) -> list[torch.Tensor]:
    """Each layer's mean per-head output ``(H_l, Dv)`` over every query position of the
    data (observation point ``out``)."""
    sums: list[torch.Tensor | None] = [None] * len(layers)
    counts = [0] * len(layers)

    def observer(i: int):
        def fn(points) -> None:
            out = points.out.detach().double()  # (B, H_l, Tq, Dv)
            s = out.sum(dim=(0, 2))  # (H_l, Dv)
            sums[i] = s if sums[i] is None else sums[i] + s
            counts[i] += out.shape[0] * out.shape[2]

        return fn

    handles = [m.add_observer(observer(i)) for i, m in enumerate(layers)]
    try:
        for index, batch in enumerate(batches):
            _checked_loss(loss_fn(model, batch), index)
    finally:
        for h in handles:
            h.remove()
    return [
        (s / c) if s is not None else torch.zeros(m.num_heads, m.head_dim, dtype=torch.float64)
        for s, c, m in zip(sums, counts, layers, strict=True)
    ]


def _mean_loss(model: nn.Module, batches: list, loss_fn: LossFn) -> float:
    """The mean per-example loss (a scalar loss counts as one batch's mean)."""
    total, examples = 0.0, 0
    for index, batch in enumerate(batches):
        loss, count = _checked_loss(loss_fn(model, batch), index)
        total += float(loss)
        examples += 1 if count is None else count
    return total / examples


@contextlib.contextmanager
def ablated(
    layer: MultiHeadAttention, head: int, mean_output: torch.Tensor | None = None
) -> Iterator[None]:
    """Remove head ``head`` (current position) of ``layer`` inside the block: its output is
    zeroed through the head mask, and with ``mean_output`` ``(Dv,)`` that mean's contribution
    ``mean_output @ W_O[head]`` ``(E,)`` is added back (mean ablation)."""
    keep = torch.ones(layer.num_heads, dtype=layer.out_proj.weight.dtype)
    keep[head] = 0.0

    def pre(module: MultiHeadAttention, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        given = kwargs.get("head_mask")
        mask = keep.to(module.out_proj.weight.device)  # (H_l,)
        kwargs["head_mask"] = mask if given is None else mask * given
        return args, kwargs

    handles = [layer.register_forward_pre_hook(pre, with_kwargs=True)]
    if mean_output is not None:
        w_o = layer.W_O[head]  # (Dv, E)
        shift = (mean_output.to(w_o) @ w_o).detach()  # (E,)

        def post(module: MultiHeadAttention, args: tuple, output: tuple) -> tuple:
            out, weights = output
            return out + shift, weights  # (B, Tq, E)

        handles.append(layer.register_forward_hook(post))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def ablation_importance(
    model: nn.Module,
    batches: Iterable[Any],
    loss_fn: LossFn | None = None,
    *,
    mode: str = "zero",
    progress: bool = True,
) -> list[torch.Tensor]:
    """The loss increase when one head at a time is ablated: ``E_x L(x; head h removed) -
    E_x L(x)`` (per-example mean losses), ``"zero"`` or ``"mean"`` ablation.

    Costs one pass over ``batches`` per head (plus one, and one more for ``"mean"``);
    ``batches`` is read into a list first. Scored in eval mode under ``torch.no_grad``.

    Returns:
        ``[(H_l,) float32 tensor per layer]``; positive = the loss grows without the head.

    Raises:
        ValueError: a bad ``mode``, a model without MultiHeadAttention, no batches, a
            non-finite loss.
    """
    _checks.require_choice("mode", mode, ABLATIONS)
    layers = _layers(model)
    loss_fn = lm_loss if loss_fn is None else loss_fn
    data = list(batches)
    if not data:
        raise ValueError("batches yielded no batches: there is nothing to score heads on")
    with evaluating(model), torch.no_grad():
        base = _mean_loss(model, data, loss_fn)
        means = _mean_outputs(model, layers, data, loss_fn) if mode == "mean" else None
        pairs = [(i, h) for i, m in enumerate(layers) for h in range(m.num_heads)]
        scores = [torch.zeros(m.num_heads) for m in layers]
        for i, h in _progress(pairs, progress, f"{mode} ablation"):
            mean = None if means is None else means[i][h]
            with ablated(layers[i], h, mean):
                scores[i][h] = _mean_loss(model, data, loss_fn) - base
    return scores
