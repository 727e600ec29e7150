"""Dynamic evaluation: score a long text while the model keeps learning from what it has
already scored (Krause et al. 2018, "Dynamic Evaluation of Neural Sequence Models").

The text is cut into the same sliding windows as :meth:`DecoderLM.token_nll`. Windows are
taken in order; each one is first scored, then its newly scored tokens give one gradient step.
So the prediction of a token depends only on the tokens before it, as in an adaptive
compressor such as gzip, which also learns from the text it has already coded. With
``lr=0`` the scores equal :meth:`DecoderLM.token_nll`'s.

Example:
    >>> import torch
    >>> from multihead.models import DecoderConfig, DecoderLM
    >>> _ = torch.manual_seed(0)
    >>> model = DecoderLM(DecoderConfig(vocab_size=16, max_seq_len=16, d_model=32,
    ...                                 num_layers=1, num_heads=2)).eval()
    >>> text = torch.randint(0, 16, (24,)).repeat(8)        # (N,) a repeated random text
    >>> static = model.token_nll(text, stride=8)
    >>> adapted = dynamic_token_nll(model, text, stride=8, lr=3e-3)
    >>> bool(adapted[-48:].mean() < static[-48:].mean())   # it learned the repeats
    True
"""

from __future__ import annotations

import copy
import math

import torch
from torch.nn import functional as F

from multihead.models.decoder import DecoderLM, sliding_windows


def dynamic_token_nll(
    model: DecoderLM,
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
        context, stride: the windows, as in :meth:`DecoderLM.token_nll` (one window per step,
            so a smaller stride means more, smaller steps).
        betas: Adam betas.
        progress: show a tqdm bar over the windows.

    Returns:
        ``(N - 1,)`` float32: entry i is ``-log p(tokens[i + 1] | tokens[..i])`` under the
        model as adapted on ``tokens[..i]`` (up to the start of its window's new tokens).
    """
    if not isinstance(model, DecoderLM):
        raise TypeError(f"model must be a DecoderLM, got {type(model).__name__}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr >= 0 or math.isinf(lr):
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
    tokens, width, starts = sliding_windows(tokens, context, stride, model.config.max_seq_len)
    learner = copy.deepcopy(model).eval()
    params = [p for p in learner.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr, betas=betas) if lr > 0 else None
    device = next(learner.parameters()).device
    nll = torch.empty(len(tokens) - 1)
    offsets = torch.arange(width + 1)
    scored = 0  # targets 0 .. scored-1 (target i is tokens[i + 1]) are done
    windows = starts
    if progress:
        from tqdm.auto import tqdm

        windows = tqdm(starts, unit="window", desc="dynamic eval")
    for s in windows:
        window = tokens[s + offsets].to(device)  # (width + 1,)
        lo = scored - s  # first target of this window not scored yet
        with torch.set_grad_enabled(optimizer is not None):
            logits = learner(window[None, :-1])[0].float()  # (width, V)
            losses = F.cross_entropy(logits[lo:], window[lo + 1 :], reduction="none")  # (new,)
        nll[scored : s + width] = losses.detach().cpu()
        scored = s + width
        if optimizer is not None:
            losses.mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return nll
