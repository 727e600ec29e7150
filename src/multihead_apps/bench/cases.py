"""Benchmark cases (problem sizes and masks) and competitors (the layers timed on them).

A :class:`Case` is one problem: ``(B, T, E, H)`` and a mask kind. A :class:`Competitor` knows
how to build a layer and a call for a case and a direction (``"fwd"`` or ``"fwd+bwd"``), how
many FLOPs that call is credited with, and whether it must be skipped (and why).

Direction semantics, the same for every competitor:

* ``fwd``: inference. ``torch.no_grad()``, module in eval mode (the "train" rows of
  ``torch.nn.MultiheadAttention`` stay in train mode, which disables its fast path).
* ``fwd+bwd``: training step of the layer. Train mode, input requiring grad, backward from
  the output with a fixed random gradient. Returned weights (``need_weights=True``) are kept
  alive until the backward ends but not differentiated.

FLOPs (forward, per call) = projections ``2·B·T·E·(E + 2·E_kv)`` + output ``2·B·T·E·E`` +
attention ``4·B·H·P·D``, where ``P`` is the number of (query, key) pairs the mask allows
(``T²`` full, ``T(T+1)/2`` causal, ``Σ_i min(i+1, W)`` for a causal window W) and
``E_kv = H_kv·D``. Forward+backward is credited with 3x forward. Every competitor on a case is
credited with the same useful FLOPs, whatever it actually computes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from multihead import masks
from multihead.attention import MultiHeadAttention
from multihead.compat import MultiheadAttention as CompatMultiheadAttention
from multihead.functional import request_for, select_backend
from multihead_apps.bench.baselines import SdpaLinear, TutorialMultiHead

FULL, CAUSAL, WINDOW = "full", "causal", "window"
MASK_KINDS = (FULL, CAUSAL, WINDOW)
FWD, FWD_BWD = "fwd", "fwd+bwd"
DIRECTIONS = (FWD, FWD_BWD)
REFERENCE = "sdpa-linear"
GQA_KV_HEADS = 2


@dataclass(frozen=True)
class Case:
    """One problem size and mask.

    ``rounds`` is the default number of interleaved timing rounds (long cases get fewer);
    ``quick`` marks the cases ``--quick`` runs.
    """

    name: str
    batch: int
    seq: int
    embed: int
    heads: int
    mask: str = FULL
    window: int | None = None
    rounds: int = 7
    quick: bool = False

    def __post_init__(self) -> None:
        if self.mask not in MASK_KINDS:
            raise ValueError(f"mask must be one of {MASK_KINDS}, got {self.mask!r}")
        if (self.mask == WINDOW) != (self.window is not None):
            raise ValueError("window is required for mask='window' and only for it")
        if self.embed % self.heads:
            raise ValueError(f"embed={self.embed} is not divisible by heads={self.heads}")

    @property
    def head_dim(self) -> int:
        return self.embed // self.heads

    @property
    def title(self) -> str:
        kind = f"sliding window {self.window}" if self.mask == WINDOW else self.mask
        return f"B{self.batch} T{self.seq} E{self.embed} H{self.heads}, {kind}"

    def pairs(self) -> int:
        """Allowed (query, key) pairs per batch element and head."""
        t = self.seq
        if self.mask == FULL:
            return t * t
        if self.mask == CAUSAL:
            return t * (t + 1) // 2
        w = self.window
        assert w is not None
        ramp = min(w, t)  # queries 0..w-1 see i + 1 keys, the rest see w
        return ramp * (ramp + 1) // 2 + (t - ramp) * w

    def forward_flops(self, kv_heads: int | None = None) -> float:
        """Useful forward FLOPs of one call (see the module docstring)."""
        b, t, e, h, d = self.batch, self.seq, self.embed, self.heads, self.head_dim
        e_kv = (kv_heads or h) * d
        proj = 2 * b * t * e * (e + 2 * e_kv) + 2 * b * t * e * e
        return float(proj + 4 * b * h * self.pairs() * d)

    def flops(self, direction: str, kv_heads: int | None = None) -> float:
        return self.forward_flops(kv_heads) * (3.0 if direction == FWD_BWD else 1.0)

    def score_bytes(self) -> int:
        """Bytes of one dense fp32 ``(B, H, T, T)`` score tensor."""
        return 4 * self.batch * self.heads * self.seq * self.seq

    def to_json(self) -> dict:
        return asdict(self)


CASES: tuple[Case, ...] = (
    Case("b8-t256", 8, 256, 512, 8, rounds=9, quick=True),
    Case("b32-t128", 32, 128, 768, 12, rounds=9),
    Case("t2048", 1, 2048, 512, 8, rounds=7),
    Case("t2048-causal", 1, 2048, 512, 8, CAUSAL, rounds=7, quick=True),
    Case("t8192", 1, 8192, 512, 8, rounds=3),
    Case("t8192-causal", 1, 8192, 512, 8, CAUSAL, rounds=3),
    Case("t16384-window256", 1, 16384, 512, 8, WINDOW, window=256, rounds=5),
)


def get_cases(names: str | None = None, *, quick: bool = False) -> list[Case]:
    """Cases by comma-separated name (in the given order), else the quick or the full set."""
    if names:
        by_name = {c.name: c for c in CASES}
        chosen = []
        for n in (s.strip() for s in names.split(",")):
            if not n:
                continue
            if n not in by_name:
                raise ValueError(f"unknown case {n!r}; expected one of {', '.join(by_name)}")
            chosen.append(by_name[n])
        if not chosen:
            raise ValueError(f"--cases is empty; expected names from {', '.join(by_name)}")
        return chosen
    return [c for c in CASES if c.quick or not quick]


# ---------------------------------------------------------------------- inputs
@dataclass
class Inputs:
    """Tensors shared by every competitor of one case (built once; masks lazily)."""

    case: Case
    x: torch.Tensor  # (B, T, E)
    grad: torch.Tensor  # (B, T, E): the output gradient of fwd+bwd
    _cache: dict = field(default_factory=dict)

    @classmethod
    def make(cls, case: Case, seed: int = 0) -> Inputs:
        g = torch.Generator().manual_seed(seed)
        shape = (case.batch, case.seq, case.embed)
        return cls(case, torch.randn(shape, generator=g), torch.randn(shape, generator=g))

    def allowed(self) -> torch.Tensor | None:
        """Dense bool mask ``(T, T)``, **True = may attend**; None for full attention."""
        if self.case.mask == FULL:
            return None
        if "allowed" not in self._cache:
            t = self.case.seq
            pos = torch.arange(t)
            allowed = pos[None, :] <= pos[:, None]  # (Tq, Tk): key <= query
            if self.case.window is not None:
                allowed &= pos[None, :] > pos[:, None] - self.case.window
            self._cache["allowed"] = allowed
        return self._cache["allowed"]

    def blocked(self) -> torch.Tensor | None:
        """torch.nn.MultiheadAttention's bool ``attn_mask`` ``(T, T)``: **True = blocked**."""
        if self.case.mask == FULL:
            return None
        if "blocked" not in self._cache:
            self._cache["blocked"] = ~self.allowed()
        return self._cache["blocked"]

    def mh_mask(self) -> masks.AttentionMask | None:
        if self.case.mask == WINDOW:
            assert self.case.window is not None
            return masks.sliding_window(self.case.window)
        return None


# ---------------------------------------------------------------------- competitors
Forward = Callable[[torch.Tensor], tuple]  # x -> (out, *kept_alive)
Builder = Callable[[Inputs], tuple[nn.Module, Forward]]


@dataclass(frozen=True)
class Competitor:
    """A layer timed on every case it applies to.

    ``dense``: peak memory of one call in units of one ``(B, H, T, T)`` fp32 score tensor,
    per direction, used only to skip calls that would not fit (0 = O(T) memory).
    ``train_forward``: keep train mode in the forward direction (torch's non-fast path).
    ``not_for``: case mask kinds the competitor cannot express, with the reason.
    """

    key: str
    label: str
    build: Builder
    directions: tuple[str, ...] = DIRECTIONS
    kv_heads: int | None = None
    dense: tuple[float, float] = (0.0, 0.0)
    train_forward: bool = False
    not_for: tuple[tuple[str, str], ...] = ()
    backend: str | None = None  # the multihead backend asked for, if any
    need_weights: bool = False
    dense_mask: bool = False  # gets structured masks as a dense (T, T) tensor (torch's API)

    def estimated_bytes(self, case: Case, direction: str) -> float:
        return self.dense[DIRECTIONS.index(direction)] * case.score_bytes()

    def skip_reason(self, case: Case, direction: str, mem_limit_bytes: float) -> str | None:
        if direction not in self.directions:
            return "not measured in this direction"
        for kind, why in self.not_for:
            if case.mask == kind:
                return why
        est = self.estimated_bytes(case, direction)
        if est > mem_limit_bytes:
            return (
                f"materializes ~{est / 2**30:.1f} GiB of T x T scores, over the "
                f"{mem_limit_bytes / 2**30:.0f} GiB limit"
            )
        return None

    def make_call(self, inputs: Inputs, direction: str) -> Callable[[], None]:
        """A zero-argument call that runs one forward (or forward+backward)."""
        torch.manual_seed(1)
        module, fwd = self.build(inputs)
        train = direction == FWD_BWD or self.train_forward
        module.train(train)
        if direction == FWD:
            x = inputs.x

            def call() -> None:
                with torch.no_grad():
                    fwd(x)

            return call
        x = inputs.x.detach().clone().requires_grad_(True)
        grad = inputs.grad
        params = [p for p in module.parameters() if p.requires_grad]

        def call_backward() -> None:
            for p in params:
                p.grad = None
            x.grad = None
            result = fwd(x)
            result[0].backward(grad)
            del result

        return call_backward

    def chosen_backend(self, case: Case, direction: str) -> str | None:
        """The backend multihead's ``auto`` picks for this call (None if not multihead)."""
        if self.backend != "auto":
            return self.backend
        b, h, t, d = case.batch, case.heads, case.seq, case.head_dim
        grad = direction == FWD_BWD
        q = torch.empty(b, h, t, d, requires_grad=grad)
        kv = torch.empty(b, self.kv_heads or h, t, d, requires_grad=grad)
        if case.mask == WINDOW and self.dense_mask:
            # Shape-only stand-in: auto's choice for a dense mask does not depend on values.
            mask = masks.dense(torch.ones(1, 1, 1, 1, dtype=torch.bool).expand(1, 1, t, t))
        elif case.mask == CAUSAL:
            mask = masks.causal(align="bottom_right")
        elif case.mask == WINDOW:
            assert case.window is not None
            mask = masks.sliding_window(case.window)
        else:
            mask = None
        with torch.set_grad_enabled(grad):
            req = request_for(q, kv, kv, mask=mask, need_weights=self.need_weights)
            return select_backend(req).name


def _sdpa_linear(inputs: Inputs) -> tuple[nn.Module, Forward]:
    c = inputs.case
    m = SdpaLinear(c.embed, c.heads)
    causal = c.mask == CAUSAL
    mask = inputs.allowed() if c.mask == WINDOW else None
    return m, lambda x: (m(x, attn_mask=mask, is_causal=causal),)


def _multihead(backend: str, *, kv_heads: int | None = None, weights: bool = False) -> Builder:
    def build(inputs: Inputs) -> tuple[nn.Module, Forward]:
        c = inputs.case
        m = MultiHeadAttention(c.embed, c.heads, num_kv_heads=kv_heads, backend=backend)
        mask = inputs.mh_mask()
        causal = c.mask == CAUSAL
        return m, lambda x: m(x, mask=mask, is_causal=causal, need_weights=weights)

    return build


def _torch_like(cls: type[nn.Module], *, weights: bool) -> Builder:
    def build(inputs: Inputs) -> tuple[nn.Module, Forward]:
        c = inputs.case
        m = cls(c.embed, c.heads, batch_first=True)
        am = inputs.blocked()
        causal = c.mask == CAUSAL
        return m, lambda x: m(x, x, x, need_weights=weights, attn_mask=am, is_causal=causal)

    return build


def _tutorial(inputs: Inputs) -> tuple[nn.Module, Forward]:
    c = inputs.case
    m = TutorialMultiHead(c.embed, c.heads, block_size=c.seq, causal=c.mask == CAUSAL)
    return m, lambda x: (m(x),)


_NO_WINDOW_TUTORIAL = ((WINDOW, "the tutorial model has only a causal tril mask"),)

COMPETITORS: tuple[Competitor, ...] = (
    Competitor(REFERENCE, "SDPA + Linear (reference)", _sdpa_linear),
    Competitor("mh-auto", "multihead auto", _multihead("auto"), backend="auto"),
    Competitor("mh-sdpa", "multihead sdpa", _multihead("sdpa"), backend="sdpa"),
    Competitor("mh-blockwise", "multihead blockwise", _multihead("blockwise"), backend="blockwise"),
    Competitor("mh-math", "multihead math", _multihead("math"), backend="math", dense=(2.5, 3.5)),
    Competitor(
        "mh-auto-weights",
        "multihead auto, need_weights",
        _multihead("auto", weights=True),
        backend="auto",
        need_weights=True,
        dense=(2.5, 3.0),
    ),
    Competitor(
        "mh-gqa",
        f"multihead auto, GQA {{h}}q/{GQA_KV_HEADS}kv",
        _multihead("auto", kv_heads=GQA_KV_HEADS),
        backend="auto",
        kv_heads=GQA_KV_HEADS,
    ),
    Competitor(
        "compat",
        "multihead.compat, need_weights=False",
        _torch_like(CompatMultiheadAttention, weights=False),
        backend="auto",
        dense_mask=True,
    ),
    Competitor(
        "torch-mha-train",
        "torch MHA train, need_weights=False",
        _torch_like(nn.MultiheadAttention, weights=False),
        train_forward=True,
    ),
    Competitor(
        "torch-mha-train-weights",
        "torch MHA train, need_weights=True",
        _torch_like(nn.MultiheadAttention, weights=True),
        train_forward=True,
        dense=(2.5, 3.0),
    ),
    Competitor(
        "torch-mha-eval",
        "torch MHA eval, need_weights=False",
        _torch_like(nn.MultiheadAttention, weights=False),
        directions=(FWD,),
        dense=(1.2, 1.2),
    ),
    Competitor(
        "torch-mha-eval-weights",
        "torch MHA eval, need_weights=True",
        _torch_like(nn.MultiheadAttention, weights=True),
        directions=(FWD,),
        dense=(2.5, 3.0),
    ),
    Competitor(
        "tutorial",
        "tutorial per-head ModuleList",
        _tutorial,
        dense=(1.5, 3.5),
        not_for=_NO_WINDOW_TUTORIAL,
    ),
)


def get_competitor(key: str) -> Competitor:
    for c in COMPETITORS:
        if c.key == key:
            return c
    raise ValueError(f"unknown competitor {key!r}; expected one of {[c.key for c in COMPETITORS]}")


def label(comp: Competitor, case: Case, direction: str) -> str:
    """The row label, with the backend ``auto`` resolves to."""
    text = comp.label.format(h=case.heads)
    if comp.backend == "auto":
        text += f" [{comp.chosen_backend(case, direction)}]"
    return text
