"""Compiled decode steps: one decode step of a DecoderLM as one ``torch.compile`` graph.

An eager decode step runs dozens of small operators per layer (norms, rotations, the cache
write, the residual sums) around the weight products, and on a CPU each costs microseconds
of dispatch: about a third of a step of a 135M-parameter Llama at batch 1. Compiled with
inductor and freezing (the weights become constants of the graph, so inductor fuses the
small operators into a few loops and lays each weight out once for the step's batch size),
the step is little more than its weight products. Measured with
``python benchmarks/convert_speed.py --compile`` (benchmarks/RESULTS.md, "Packed weights
and compiled decoding").

:meth:`DecoderLM.generate(..., compile=True) <multihead.models.DecoderLM.generate>` uses
:func:`step_for`; the prefill stays eager. Costs and rules:

- Each compiled step owns one KV cache (freezing makes the graph guard on the identity of
  the cache's buffers, so a new cache per call would compile again); generation resets it
  and writes the prompt into it eagerly before the compiled steps run.
- Compile time: once per model, batch size, cache length, dtype and device, then reused
  (about 65-95 s for the 30-layer 135M model on 2 cores; seconds for a tiny one). Worth it
  for long or repeated generation, not for one short answer.
- Memory: freezing keeps its own copies of the weights while a compiled step lives. Steps
  are kept per model and freed with it or by :func:`release`.
- Frozen weights are never stale: each step remembers the identity and version counter of
  every parameter and buffer it was compiled with, and any change (an optimizer step,
  ``load_state_dict``, pruning) compiles a new step instead of reusing the old one.
- Numbers: fused loops sum in other orders than eager kernels, so logits agree to rounding
  (fp32: about 1e-6 relative), not bit for bit; greedy tokens can differ only where two
  logits tie to rounding.

Each compiled step gets its own code object, so torch's per-function cache of compiled
graphs (``torch._dynamo.config.cache_size_limit``) never mixes the steps of two models or of
two weight versions.
"""

from __future__ import annotations

import itertools
import types
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from multihead.cache import KVCache
    from multihead.models.decoder import DecoderLM

_STEPS: weakref.WeakKeyDictionary[nn.Module, dict[tuple, CompiledStep]] = (
    weakref.WeakKeyDictionary()
)
_SERIAL = itertools.count()


def fingerprint(model: nn.Module) -> tuple:
    """Identity and version counter of every parameter and buffer of ``model``."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    return tuple((id(t), t._version) for t in tensors)


def _decode(model: DecoderLM, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache):
    hidden = model.transform_cached(tokens, positions, cache)  # (B, 1, E)
    return model.head(hidden[:, -1])  # (B, V)


def _compile() -> Callable:
    # A code object of its own: torch caches compiled graphs per code object. The model is
    # an argument, not a closure, so that a compiled step does not keep its model alive.
    code = _decode.__code__.replace(co_name=f"decode_step_{next(_SERIAL)}")
    fresh = types.FunctionType(code, _decode.__globals__, code.co_name)
    return torch.compile(fresh, dynamic=False, fullgraph=True)


class CompiledStep:
    """A compiled decode step and the KV cache it always writes to.

    Freezing makes the graph guard on the identity of every module tensor it reads, the
    cache's buffers too, so each compiled step owns one cache: generation resets it and
    fills it with the prompt (eagerly) before the compiled steps run.
    """

    def __init__(self, model: nn.Module, cache: KVCache) -> None:
        self.cache = cache
        self.fingerprint = fingerprint(model)
        self._model = weakref.ref(model)
        self._compiled = _compile()

    def __call__(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, V)`` of ``tokens`` ``(B, 1)`` at ``positions`` ``(B, 1)``, written
        to :attr:`cache`; compiles at the first call. Call under ``torch.no_grad()``."""
        from torch._inductor import config  # imported here: a heavy import few callers need

        try:
            with config.patch(freezing=True):
                return self._compiled(self._model(), tokens, positions, self.cache)
        except Exception as e:  # torch's compiler: name what failed and the way out
            raise RuntimeError(
                f"the compiled decode step failed ({type(e).__name__}: {e}); "
                "generate without compile=True to decode eagerly"
            ) from e


def step_for(model: DecoderLM, batch_size: int, max_len: int) -> CompiledStep:
    """The compiled decode step of ``model`` for ``batch_size`` rows and a cache of
    ``max_len`` positions (module docstring), with its cache; reused while every parameter
    and buffer of the model is unchanged, otherwise compiled anew."""
    p = next(model.parameters())
    key = (batch_size, max_len, p.dtype, p.device)
    steps = _STEPS.setdefault(model, {})
    now = fingerprint(model)
    for old in [k for k, step in steps.items() if step.fingerprint != now]:
        del steps[old]  # compiled with weights that are no longer the model's
    step = steps.get(key)
    if step is None:
        step = steps[key] = CompiledStep(model, model.new_cache(batch_size, max_len))
    return step


def compiled_steps(model: nn.Module) -> int:
    """How many compiled steps ``model`` holds."""
    return len(_STEPS.get(model, {}))


def release(model: nn.Module) -> None:
    """Free ``model``'s compiled steps and the weight copies they hold."""
    _STEPS.pop(model, None)
