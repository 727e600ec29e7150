"""Next-token scores of a language model over batches of (inputs, targets): summed negative
log-likelihood, scored tokens and argmax hits. The training loop's evaluation; anything that
scores a model on batches with ignored positions can use the same."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from multihead.data import IGNORE


@dataclass(frozen=True)
class Scores:
    """Sums over the scored target tokens (those that are not ``IGNORE``)."""

    nll: float  # summed negative log-likelihood, nats
    tokens: int
    correct: int  # tokens whose argmax prediction is the target

    @property
    def loss(self) -> float:
        """Mean NLL per scored token; an error when nothing was scored (a mean over zero
        tokens is undefined, and reporting 0 would look like a perfect model)."""
        return self.nll / self._scored()

    @property
    def accuracy(self) -> float:
        return self.correct / self._scored()

    def _scored(self) -> int:
        if self.tokens <= 0:
            raise ValueError("no tokens were scored: the mean loss and accuracy are undefined")
        return self.tokens


@torch.no_grad()
def score_batches(
    forward: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device | str = "cpu",
    autocast: contextlib.AbstractContextManager | None = None,
) -> Scores:
    """Score ``forward`` (tokens ``(b, T)`` -> logits ``(b, T, V)``) on ``(x, y)`` batches,
    both ``(b, T)``, where ``y`` holds the target of each position or ``IGNORE``.

    Raises ValueError when no token was scored (no batches, or every target ``IGNORE``).

    Put the model in eval mode first (:func:`evaluating`): dropout would make scores random.

    Example:
        >>> vocab = 5
        >>> uniform = lambda x: torch.zeros(*x.shape, vocab)  # (b, T, V): every token alike
        >>> x = torch.zeros(2, 3, dtype=torch.long)
        >>> y = torch.tensor([[1, 2, IGNORE], [3, IGNORE, IGNORE]])
        >>> s = score_batches(uniform, [(x, y)])
        >>> s.tokens, round(s.loss, 4) == round(math.log(vocab), 4)
        (3, True)
    """
    nll, count, correct, seen = 0.0, 0, 0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with autocast or contextlib.nullcontext():
            logits = forward(x).float()  # (b, T, V)
        flat = logits.view(-1, logits.shape[-1])  # (b*T, V)
        targets = y.reshape(-1)  # (b*T,)
        nll += float(F.cross_entropy(flat, targets, ignore_index=IGNORE, reduction="sum"))
        scored = targets != IGNORE
        count += int(scored.sum())
        correct += int((flat.argmax(-1) == targets)[scored].sum())
        seen += 1
    if count == 0:
        why = "there were no batches" if not seen else f"every target is IGNORE in {seen} batch(es)"
        raise ValueError(f"the evaluation scored no tokens: {why}; nothing to report a loss over")
    return Scores(nll, count, correct)


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block, back in its previous mode after it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def eval_record(step: int, scores: Scores, task: str) -> dict[str, Any]:
    """The log record of an evaluation: loss, tokens, and bits per byte for text (one token
    per byte) or accuracy for a synthetic task."""
    record: dict[str, Any] = {
        "type": "eval",
        "step": step,
        "val_loss": scores.loss,
        "val_tokens": scores.tokens,
    }
    if task == "text":
        record["val_bpb"] = scores.loss / math.log(2)
    else:
        record["val_acc"] = scores.accuracy
    return record
