"""Scoring a text longer than the context: sliding windows, static and dynamic evaluation.

Legend: N text length, W window width (inputs per window), b windows per batch, V vocabulary.

Windows of ``context`` tokens start every ``stride`` tokens; the first window scores all its
tokens, every later one only the tokens no earlier window scored, so each token after the
first ``context`` is predicted from at least ``context - stride`` tokens before it.
:class:`Windows` lays them out once; :func:`token_nll` scores them in batches and
:func:`dynamic_token_nll` scores them in order while adapting the model.

Dynamic evaluation (Krause et al. 2018, "Dynamic Evaluation of Neural Sequence Models"): each
window is first scored, then its newly scored tokens give one Adam step, so the prediction
of a token depends only on the tokens before it, as in an adaptive compressor such as gzip,
which also learns from the text it has already coded. With ``lr=0`` the scores equal
:func:`token_nll`'s.

Example:
    >>> import torch
    >>> from multihead.models import DecoderConfig, DecoderLM, dynamic_token_nll
    >>> _ = torch.manual_seed(0)
    >>> model = DecoderLM(DecoderConfig(vocab_size=16, max_seq_len=16, d_model=32,
    ...                                 num_layers=1, num_heads=2)).eval()
    >>> text = torch.randint(0, 16, (24,)).repeat(8)        # (N,) a repeated random text
    >>> static = model.token_nll(text, stride=8)
    >>> adapted = dynamic_token_nll(model, text, stride=8, lr=3e-3)
    >>> bool(adapted[-48:].mean() < static[-48:].mean())   # it learned the repeats
    True
    >>> [(b.inputs.shape[0], b.first_new, b.scores) for b in
    ...  Windows.of(torch.arange(12), context=4, stride=3, max_seq_len=16).batches(2)]
    [(2, (0, 1), slice(0, 7, None)), (2, (1, 3), slice(7, 11, None))]
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from multihead import _checks
from multihead.models.config import DecoderConfig


@dataclass(frozen=True)
class WindowBatch:
    """Consecutive windows of a text, stacked.

    Attributes:
        inputs: ``(b, W)`` token ids.
        targets: ``(b, W)``: the next token of each input.
        first_new: per row, the first target no earlier window scored.
        scores: where the rows' new targets go in the ``(N - 1,)`` scores (target ``i`` is
            ``tokens[i + 1]``), rows one after the other.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    first_new: tuple[int, ...]
    scores: slice

    def new(self, losses: torch.Tensor) -> torch.Tensor:
        """The entries of per-target ``losses`` ``(b, W)`` for the new targets, rows
        concatenated: ``(scores.stop - scores.start,)``."""
        return torch.cat([losses[row, lo:] for row, lo in enumerate(self.first_new)])


@dataclass(frozen=True)
class Windows:
    """The sliding windows over one text: window ``k`` holds inputs
    ``tokens[starts[k] : starts[k] + width]``; the last one ends exactly at the text's end."""

    tokens: torch.Tensor
    width: int
    starts: tuple[int, ...]

    @classmethod
    def of(
        cls, tokens: torch.Tensor, *, context: int | None, stride: int | None, max_seq_len: int
    ) -> Windows:
        """Check the arguments of :func:`token_nll` and lay out the windows (``context``
        defaults to ``max_seq_len``, ``stride`` to ``context // 4``)."""
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
        integer = not (
            tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool
        )
        if tokens.dim() != 1 or len(tokens) < 2 or not integer:
            raise ValueError(
                f"tokens must be a (N,) tensor of integer ids with N >= 2, got shape "
                f"{tuple(tokens.shape)} and dtype {tokens.dtype}"
            )
        context = max_seq_len if context is None else context
        _checks.require_int("context", context)
        stride = max(1, context // 4) if stride is None else stride
        _checks.require_int("stride", stride)
        if not 1 <= context <= max_seq_len:
            raise ValueError(f"context must be in [1, max_seq_len={max_seq_len}], got {context}")
        if not 1 <= stride <= context:
            raise ValueError(f"stride must be in [1, context={context}], got {stride}")
        n = len(tokens)
        width = min(context, n - 1)  # inputs per window; targets are shifted by one
        starts = list(range(0, n - 1 - width + 1, stride))
        if starts[-1] + width < n - 1:
            starts.append(n - 1 - width)  # a last window ending exactly at the text's end
        return cls(tokens.long(), width, tuple(starts))

    def batches(self, batch_size: int) -> Iterator[WindowBatch]:
        """The windows in order, ``batch_size`` at a time."""
        _checks.require_int("batch_size", batch_size, minimum=1)
        offsets = torch.arange(self.width + 1)
        scored = 0  # targets 0 .. scored-1 are done
        for b in range(0, len(self.starts), batch_size):
            starts = self.starts[b : b + batch_size]
            windows = self.tokens[torch.tensor(starts)[:, None] + offsets]  # (b, W + 1)
            first = scored
            first_new = []
            for s in starts:
                first_new.append(scored - s)
                scored = s + self.width
            yield WindowBatch(
                windows[:, :-1], windows[:, 1:], tuple(first_new), slice(first, scored)
            )


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module) or not isinstance(
        getattr(model, "config", None), DecoderConfig
    ):
        raise TypeError(
            f"model must be a DecoderLM (a module with a DecoderConfig), got {type(model).__name__}"
        )
    return model


@torch.no_grad()
def token_nll(
    model: nn.Module,
    tokens: torch.Tensor,
    *,
    context: int | None = None,
    stride: int | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """Negative log-likelihood (nats) of every token of one long text after the first, in
    sliding windows (see the module docstring); :meth:`DecoderLM.token_nll` calls this.

    Returns:
        ``(N - 1,)`` float32: entry i is ``-log p(tokens[i + 1] | tokens[..i])``. Call it in
        eval mode (dropout would make the scores random).
    """
    model = _check_model(model)
    windows = Windows.of(
        tokens, context=context, stride=stride, max_seq_len=model.config.max_seq_len
    )
    device = next(model.parameters()).device
    nll = torch.empty(len(windows.tokens) - 1)
    for batch in windows.batches(batch_size):
        logits = model(batch.inputs.to(device)).float()  # (b, W, V)
        losses = F.cross_entropy(
            logits.transpose(1, 2), batch.targets.to(device), reduction="none"
        )  # (b, W)
        nll[batch.scores] = batch.new(losses).cpu()
    return nll


def dynamic_token_nll(
    model: nn.Module,
    tokens: torch.Tensor,
    *,
    lr: float,
    context: int | None = None,
    stride: int | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    progress: bool = False,
) -> torch.Tensor:
    """Negative log-likelihood (nats) of every token after the first, with an Adam step on
    each window's newly scored tokens right after scoring them.

    The model passed in is not changed: a copy adapts (in eval mode, so without dropout).

    Args:
        model: a :class:`DecoderLM`.
        tokens: ``(N,)`` integer token ids, N >= 2.
        lr: Adam learning rate of the adaptation steps (0 = no adaptation).
        context, stride: the windows, as in :func:`token_nll` (one window per step, so a
            smaller stride means more, smaller steps).
        betas: Adam betas.
        progress: show a tqdm bar over the windows.

    Returns:
        ``(N - 1,)`` float32: entry i is ``-log p(tokens[i + 1] | tokens[..i])`` under the
        model as adapted on ``tokens[..i]`` (up to the start of its window's new tokens).
    """
    model = _check_model(model)
    lr = _checks.require_number("lr", lr, minimum=0.0)
    windows = Windows.of(
        tokens, context=context, stride=stride, max_seq_len=model.config.max_seq_len
    )
    learner = copy.deepcopy(model).eval()
    params = [p for p in learner.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr, betas=betas) if lr > 0 else None
    device = next(learner.parameters()).device
    nll = torch.empty(len(windows.tokens) - 1)
    batches = windows.batches(1)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, total=len(windows.starts), unit="window", desc="dynamic eval")
    for batch in batches:
        with torch.set_grad_enabled(optimizer is not None):
            logits = learner(batch.inputs.to(device))[0].float()  # (W, V)
            losses = F.cross_entropy(logits, batch.targets[0].to(device), reduction="none")
            new = batch.new(losses[None])  # (new,)
        nll[batch.scores] = new.detach().cpu()
        if optimizer is not None:
            new.mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return nll
