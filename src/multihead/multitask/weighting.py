"""Loss weighting: how per-head losses become one update of the shared trunk.

Every strategy has one entry point, ``backward(losses, shared=...)``: it fills ``.grad`` of
the network (and of its own parameters, if it has any) and returns the combined loss, detached,
for logging. Then the optimizer steps as usual::

    weighting = make_weighting("uncertainty", heads=net.specs)
    opt = torch.optim.Adam([*net.parameters(), *weighting.parameters()], lr=1e-3)
    opt.zero_grad()
    total = weighting.backward(net.losses(net(x), targets), shared=net.shared_parameters())
    opt.step()

Always give the optimizer ``weighting.parameters()`` too: uncertainty weighting and GradNorm
learn their weights through it (fixed weights and PCGrad have none).

Strategies:

* ``fixed``: ``sum_i w_i L_i`` with constant weights.
* ``uncertainty``: learned homoscedastic task uncertainty (Kendall, Gal and Cipolla 2018).
* ``gradnorm``: weights learned so the tasks' gradient norms on the shared parameters train at
  similar rates (Chen et al. 2018).
* ``pcgrad``: per-task gradients on the shared parameters are projected off each other's
  normal plane when they conflict (Yu et al. 2020).

Example:
    >>> import torch
    >>> from multihead.multitask import make_weighting
    >>> w = make_weighting("fixed", heads=["a", "b"], weights={"a": 1.0, "b": 0.5})
    >>> p = torch.nn.Parameter(torch.tensor(2.0))
    >>> float(w.backward({"a": p * 1.0, "b": p * 3.0}, shared=[p])), float(p.grad)
    (5.0, 2.5)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from multihead.multitask.specs import HeadSpec


def _head_names(heads: Mapping[str, HeadSpec] | Sequence[str]) -> list[str]:
    if isinstance(heads, str):
        raise TypeError(f"heads must be a mapping or sequence of head names, got {heads!r}")
    names = list(heads)
    if not names:
        raise ValueError("heads must name at least one head, got none")
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"head names must be strings, got {n!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"heads {names} name a head twice; head names must be unique")
    return names


class LossWeighting(nn.Module):
    """Common parts: the head names, loss checking and the plain ``sum w_i L_i`` backward."""

    name: ClassVar[str] = ""

    def __init__(self, *, heads: Mapping[str, HeadSpec] | Sequence[str]) -> None:
        super().__init__()
        self.names = _head_names(heads)
        self._index = {n: i for i, n in enumerate(self.names)}

    def _check(self, losses: Mapping[str, torch.Tensor]) -> list[str]:
        if not isinstance(losses, Mapping) or not losses:
            raise ValueError(f"losses must be a non-empty mapping {{head: loss}}, got {losses!r}")
        unknown = [n for n in losses if n not in self._index]
        if unknown:
            raise ValueError(
                f"losses name heads {unknown} that this {self.name} weighting was not built "
                f"for (it knows {self.names}); build a new weighting after add_head"
            )
        for n, loss in losses.items():
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
                raise ValueError(f"loss for head {n!r} must be a scalar tensor, got {loss!r}")
            if not torch.isfinite(loss):
                raise ValueError(f"loss for head {n!r} is {loss.item()}; training has diverged")
        return list(losses)

    def weights(self) -> dict[str, float]:
        """The current weight of each head's loss."""
        raise NotImplementedError

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The differentiable combined loss (for strategies that are one)."""
        raise NotImplementedError

    def backward(
        self, losses: Mapping[str, torch.Tensor], *, shared: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Accumulate gradients for one step; return the combined loss, detached."""
        total = self.combine(losses)
        total.backward()
        return total.detach()

    def extra_repr(self) -> str:
        w = ", ".join(f"{k}={v:.3g}" for k, v in self.weights().items())
        return f"heads={self.names}, weights=({w})"


class FixedWeighting(LossWeighting):
    """``sum_i w_i L_i`` with constant weights (default 1 for every head)."""

    name = "fixed"

    def __init__(
        self,
        *,
        heads: Mapping[str, HeadSpec] | Sequence[str],
        weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(heads=heads)
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(self.names))
        if unknown:
            raise ValueError(f"weights name unknown heads {unknown}; the heads are {self.names}")
        values = []
        for n in self.names:
            v = weights.get(n, 1.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"weight for head {n!r} must be a finite number, got {v!r}")
            if v < 0:
                raise ValueError(f"weight for head {n!r} must be non-negative, got {v!r}")
            values.append(float(v))
        self.register_buffer("fixed", torch.tensor(values, dtype=torch.float64))

    def weights(self) -> dict[str, float]:
        return {n: float(w) for n, w in zip(self.names, self.fixed)}

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        names = self._check(losses)
        return sum(float(self.fixed[self._index[n]]) * losses[n] for n in names)  # type: ignore[return-value]


class UncertaintyWeighting(LossWeighting):
    """Learned task uncertainty (Kendall, Gal and Cipolla 2018, eq. 7 and 10).

    With one learned ``s_i = log sigma_i^2`` per head the combined loss is

        sum_i  c_i * exp(-s_i) * L_i  +  s_i / 2

    where ``c_i = 1/2`` for a Gaussian likelihood (regression: ``1/(2 sigma^2) L + log sigma``)
    and ``c_i = 1`` for a categorical one (classification, binned, multi-label:
    ``1/sigma^2 L + log sigma``). Learning ``s`` down-weights noisy, high-loss tasks; the
    ``s_i / 2`` term stops every sigma from growing without bound. ``s`` is parameterised in
    log space for numerical stability, as in the paper.
    """

    name = "uncertainty"

    def __init__(self, *, heads: Mapping[str, HeadSpec], init_log_var: float = 0.0) -> None:
        if not isinstance(heads, Mapping):
            raise TypeError(
                "uncertainty weighting needs each head's spec to pick its likelihood; pass "
                f"heads=net.specs, got {type(heads).__name__}"
            )
        super().__init__(heads=heads)
        scale = [0.5 if heads[n].likelihood == "gaussian" else 1.0 for n in self.names]
        self.register_buffer("scale", torch.tensor(scale))
        self.log_vars = nn.Parameter(torch.full((len(self.names),), float(init_log_var)))

    def weights(self) -> dict[str, float]:
        w = self.scale * torch.exp(-self.log_vars.detach())
        return {n: float(v) for n, v in zip(self.names, w)}

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        names = self._check(losses)
        terms = []
        for n in names:
            i = self._index[n]
            s = self.log_vars[i]
            terms.append(self.scale[i] * torch.exp(-s) * losses[n] + 0.5 * s)
        return torch.stack(terms).sum()


def _grads(loss: torch.Tensor, shared: Sequence[torch.Tensor]) -> torch.Tensor:
    """d loss / d shared, flattened into one vector; parameters the loss misses give zeros."""
    grads = torch.autograd.grad(loss, list(shared), retain_graph=True, allow_unused=True)
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, shared)]
    )


def _require_shared(shared: Sequence[torch.Tensor], who: str) -> list[torch.Tensor]:
    params = list(shared)
    if not params:
        raise ValueError(
            f"{who} needs the shared parameters (shared=net.shared_parameters()), got none; "
            "is the trunk frozen?"
        )
    return params


class GradNorm(LossWeighting):
    """Gradient normalization (Chen, Badrinarayanan, Lee and Rabinovich 2018).

    Learned weights ``w_i`` (start at 1, renormalised to sum to the number of heads). Each step:

    * ``G_i = ||d (w_i L_i) / d W||`` on the shared parameters ``W`` (the paper uses the last
      shared layer to save time; pass that subset as ``shared`` if you like);
    * ``r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0))``, the inverse training rate;
    * ``L_grad = sum_i | G_i - mean_j(G_j) * r_i ** alpha |`` with the target held constant;
      its gradient goes to the ``w_i`` only, while the network gets ``sum_i w_i L_i``.

    ``alpha`` sets how strongly slow tasks are pushed (1.5 in the paper's NYUv2 runs).
    """

    name = "gradnorm"

    def __init__(
        self,
        *,
        heads: Mapping[str, HeadSpec] | Sequence[str],
        alpha: float = 1.5,
        min_weight: float = 1e-3,
    ) -> None:
        super().__init__(heads=heads)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha < 0:
            raise ValueError(f"alpha must be a non-negative number, got {alpha!r}")
        self.alpha = float(alpha)
        self.min_weight = float(min_weight)
        n = len(self.names)
        self.task_weights = nn.Parameter(torch.ones(n))
        # L_i(0): the first loss seen for each head (NaN until seen).
        self.register_buffer("initial_losses", torch.full((n,), float("nan")))

    @torch.no_grad()
    def _renormalise(self) -> None:
        # The optimizer's step may move the weights anywhere; the paper renormalises them to
        # sum to the number of tasks so the overall learning rate is unchanged.
        w = self.task_weights
        w.clamp_(min=self.min_weight)
        w.mul_(len(self.names) / w.sum())

    def weights(self) -> dict[str, float]:
        w = self.task_weights.detach().clamp(min=self.min_weight)
        w = w * len(self.names) / w.sum()
        return {n: float(v) for n, v in zip(self.names, w)}

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        names = self._check(losses)
        w = self.task_weights.detach()
        return sum(w[self._index[n]] * losses[n] for n in names)  # type: ignore[return-value]

    def weight_loss(
        self, names: Sequence[str], losses: torch.Tensor, grad_norms: torch.Tensor
    ) -> torch.Tensor:
        """``L_grad`` as a function of the task weights.

        Args:
            names: the heads, in the order of the next two arguments.
            losses: ``(n,)`` current losses ``L_i(t)``.
            grad_norms: ``(n,)`` ``||d L_i / d W||`` (unweighted).
        """
        idx = torch.tensor([self._index[n] for n in names])
        w = self.task_weights[idx]
        g = w * grad_norms  # G_i = ||d(w_i L_i)/dW|| = w_i ||dL_i/dW|| as w_i > 0
        ratio = losses / self.initial_losses[idx]
        rate = ratio / ratio.mean()
        target = (g.mean() * rate**self.alpha).detach()
        return (g - target).abs().sum()

    def backward(
        self, losses: Mapping[str, torch.Tensor], *, shared: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        names = self._check(losses)
        params = _require_shared(shared, "gradnorm")
        self._renormalise()
        with torch.no_grad():
            for n in names:
                i = self._index[n]
                if torch.isnan(self.initial_losses[i]):
                    self.initial_losses[i] = losses[n].detach().clamp(min=1e-12)
        norms = torch.stack([_grads(losses[n], params).norm() for n in names]).detach()
        current = torch.stack([losses[n].detach() for n in names])
        total = self.combine(losses)
        total.backward()
        lgrad = self.weight_loss(names, current.to(norms.dtype), norms)
        (wgrad,) = torch.autograd.grad(lgrad, self.task_weights)
        # Overwrite, not accumulate: the network loss must not move the weights (that would
        # just drive them to zero).
        self.task_weights.grad = wgrad
        return total.detach()


def pcgrad_project(
    grads: torch.Tensor, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Projecting conflicting gradients (Yu et al. 2020, Algorithm 1).

    For each task ``i`` and the other tasks ``j`` in random order: if ``g_i . g_j < 0``,
    ``g_i <- g_i - (g_i . g_j / ||g_j||^2) g_j`` (``g_j`` is the original gradient). The
    projected gradients are summed.

    Args:
        grads: ``(K, P)``, one flattened gradient per task.
        generator: for the random order (reproducible runs).

    Returns:
        ``(P,)`` the summed projected gradient.

    Example:
        >>> import torch
        >>> pcgrad_project(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
        tensor([0.5000, 1.5000])
    """
    if grads.dim() != 2:
        raise ValueError(f"grads has shape {tuple(grads.shape)} but (K, P) is expected")
    k = grads.shape[0]
    out = grads.clone()
    sq = (grads * grads).sum(dim=1)  # (K,)
    for i in range(k):
        for j in torch.randperm(k, generator=generator).tolist():
            if j == i or sq[j] == 0:
                continue
            dot = torch.dot(out[i], grads[j])
            if dot < 0:
                out[i] = out[i] - dot / sq[j] * grads[j]
    return out.sum(dim=0)


class PCGrad(LossWeighting):
    """PCGrad (Yu et al. 2020) on the shared parameters, on top of fixed weights.

    Heads' own parameters get their ordinary gradients (nothing else touches them); the shared
    parameters get :func:`pcgrad_project` of the per-head gradients of ``w_i L_i``. Costs one
    backward pass per head plus one.
    """

    name = "pcgrad"

    def __init__(
        self,
        *,
        heads: Mapping[str, HeadSpec] | Sequence[str],
        weights: Mapping[str, float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(heads=heads)
        self.fixed = FixedWeighting(heads=self.names, weights=weights)
        self.generator = torch.Generator().manual_seed(int(seed))

    def weights(self) -> dict[str, float]:
        return self.fixed.weights()

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.fixed.combine(losses)

    def backward(
        self, losses: Mapping[str, torch.Tensor], *, shared: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        names = self._check(losses)
        params = _require_shared(shared, "pcgrad")
        w = self.fixed.weights()
        per_task = torch.stack([_grads(w[n] * losses[n], params) for n in names])  # (K, P)
        projected = pcgrad_project(per_task, generator=self.generator)
        before = [None if p.grad is None else p.grad.clone() for p in params]
        total = self.combine(losses)
        total.backward()
        offset = 0
        for p, old in zip(params, before):
            g = projected[offset : offset + p.numel()].view_as(p)
            p.grad = g.clone() if old is None else old + g
            offset += p.numel()
        return total.detach()


WEIGHTINGS: dict[str, type[LossWeighting]] = {
    cls.name: cls for cls in (FixedWeighting, UncertaintyWeighting, GradNorm, PCGrad)
}


def make_weighting(
    strategy: str, *, heads: Mapping[str, HeadSpec] | Sequence[str], **options: Any
) -> LossWeighting:
    """Build a weighting strategy by name: ``fixed``, ``uncertainty``, ``gradnorm``,
    ``pcgrad``.

    Args:
        strategy: the name.
        heads: ``net.specs`` (or just the head names for strategies that need no spec).
        **options: the strategy's own arguments (``weights=``, ``alpha=``, ``seed=``...).
    """
    cls = WEIGHTINGS.get(strategy) if isinstance(strategy, str) else None
    if cls is None:
        raise ValueError(
            f"unknown weighting strategy {strategy!r}; expected one of {sorted(WEIGHTINGS)}"
        )
    try:
        return cls(heads=heads, **options)
    except TypeError as err:
        if "unexpected keyword" in str(err):
            raise TypeError(f"weighting {strategy!r} got an unknown option: {err}") from None
        raise
