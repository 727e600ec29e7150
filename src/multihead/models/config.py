"""Model configurations: plain dataclasses, validated in ``__post_init__``.

Every attention option of the core is reachable from here: grouped-query heads
(``num_kv_heads``), sliding ``window``, ``position`` (RoPE with its base, partial rotary and
pairing; ALiBi; sinusoidal; learned; none) and the attention ``backend``.

Example:
    >>> from multihead.models import DecoderConfig
    >>> cfg = DecoderConfig(vocab_size=256, d_model=64, num_layers=2, num_heads=4,
    ...                     num_kv_heads=2, position="rope")
    >>> cfg.head_size, cfg.kv_heads, cfg.ffn_size
    (16, 2, 256)
    >>> DecoderConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, ClassVar

POSITIONS = ("rope", "alibi", "sinusoidal", "learned", "none")
ACTIVATIONS = ("gelu", "swiglu")
NORMS = ("layernorm", "rmsnorm")
POOLINGS = ("mean", "first")


def _int(name: str, value: Any, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _prob(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")


@dataclass
class TransformerConfig:
    """Fields shared by decoders and encoders.

    Attributes:
        vocab_size: number of token ids.
        max_seq_len: longest sequence; bounds learned positions and sizes caches.
        d_model: model width E.
        num_layers: transformer blocks.
        num_heads: query heads Hq; must divide ``d_model`` unless ``head_dim`` is set.
        num_kv_heads: key/value heads Hkv (None = Hq); must divide ``num_heads`` (GQA/MQA).
        head_dim: D (None = d_model / num_heads).
        ffn_dim: hidden width of the feed-forward (None = 4 E for GELU, about 8/3 E rounded
            up to a multiple of 8 for SwiGLU, which keeps the parameter count of 4 E GELU).
        activation: ``"gelu"`` or ``"swiglu"`` (Shazeer 2020).
        norm: ``"layernorm"`` or ``"rmsnorm"`` (Zhang and Sennrich 2019).
        norm_eps: epsilon of the norms.
        bias: biases in the linear layers.
        position: ``"rope"``, ``"alibi"``, ``"sinusoidal"``, ``"learned"`` or ``"none"``.
        rope_base: RoPE frequency base.
        rope_fraction: fraction of each head's channels RoPE rotates (partial rotary).
        rope_interleaved: RoPE pairs ``(2i, 2i+1)`` instead of ``(i, i + R/2)``.
        window: sliding attention window W (each query sees W keys), None for full attention.
        dropout: dropout after attention and feed-forward, and on embeddings.
        attn_dropout: dropout on attention weights.
        backend: attention backend name (``"auto"``, ``"sdpa"``, ``"blockwise"``, ``"math"``).
    """

    vocab_size: int = 256
    max_seq_len: int = 256
    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int | None = None
    head_dim: int | None = None
    ffn_dim: int | None = None
    activation: str = "gelu"
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    bias: bool = True
    position: str = "rope"
    rope_base: float = 10000.0
    rope_fraction: float = 1.0
    rope_interleaved: bool = False
    window: int | None = None
    dropout: float = 0.0
    attn_dropout: float = 0.0
    backend: str = "auto"

    kind: ClassVar[str] = "transformer"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_seq_len", "d_model", "num_layers", "num_heads"):
            _int(name, getattr(self, name))
        if self.head_dim is None and self.d_model % self.num_heads:
            raise ValueError(
                f"num_heads={self.num_heads} does not divide d_model={self.d_model}; choose "
                "num_heads dividing d_model or set head_dim"
            )
        if self.head_dim is not None:
            _int("head_dim", self.head_dim)
        if self.num_kv_heads is not None:
            _int("num_kv_heads", self.num_kv_heads)
            if self.num_heads % self.num_kv_heads:
                raise ValueError(
                    f"num_kv_heads={self.num_kv_heads} does not divide num_heads="
                    f"{self.num_heads}; each KV head must serve a whole group of query heads"
                )
        if self.ffn_dim is not None:
            _int("ffn_dim", self.ffn_dim)
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("norm", self.norm, NORMS)
        _choice("position", self.position, POSITIONS)
        if not (isinstance(self.norm_eps, (int, float)) and self.norm_eps > 0):
            raise ValueError(f"norm_eps must be a positive float, got {self.norm_eps!r}")
        if not (isinstance(self.rope_base, (int, float)) and self.rope_base > 1):
            raise ValueError(f"rope_base must be a number > 1, got {self.rope_base!r}")
        if not (isinstance(self.rope_fraction, (int, float)) and 0 < self.rope_fraction <= 1):
            raise ValueError(f"rope_fraction must be in (0, 1], got {self.rope_fraction!r}")
        if self.position == "rope" and self.rotary_dim % 2:
            what = "head_dim" if self.rope_fraction == 1 else "head_dim * rope_fraction"
            raise ValueError(
                f"position='rope' rotates channel pairs, so {what} must be even, got "
                f"{self.rotary_dim} (head_dim={self.head_size}); change num_heads/d_model/"
                "head_dim or rope_fraction"
            )
        if self.position == "sinusoidal" and self.d_model % 2:
            raise ValueError(
                f"position='sinusoidal' needs an even d_model, got d_model={self.d_model}"
            )
        if self.window is not None and (
            isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1
        ):
            raise ValueError(f"window must be an integer >= 1 or None, got {self.window!r}")
        _prob("dropout", self.dropout)
        _prob("attn_dropout", self.attn_dropout)
        if not isinstance(self.backend, str):
            raise TypeError(f"backend must be a string, got {type(self.backend).__name__}")
        from multihead.backends import available_backends

        if self.backend != "auto" and self.backend not in available_backends():
            raise ValueError(
                f"backend must be 'auto' or one of {available_backends()}, got {self.backend!r}"
            )

    # ------------------------------------------------------------------ derived sizes
    @property
    def head_size(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.num_heads

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads if self.num_kv_heads is not None else self.num_heads

    @property
    def rotary_dim(self) -> int:
        return round(self.head_size * self.rope_fraction)

    @property
    def ffn_size(self) -> int:
        if self.ffn_dim is not None:
            return self.ffn_dim
        if self.activation == "swiglu":
            return -(-int(8 * self.d_model / 3) // 8) * 8
        return 4 * self.d_model

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Build from a dict (e.g. a checkpoint's ``config.json``); unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} fields {unknown}; expected a subset of {sorted(names)}"
            )
        return cls(**data)

    def diff(self, other: TransformerConfig) -> list[str]:
        """Names of the fields whose values differ, as ``"name: a != b"``."""
        return [
            f"{f.name}: {getattr(self, f.name)!r} != {getattr(other, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]


@dataclass
class DecoderConfig(TransformerConfig):
    """A causal language model (:class:`~multihead.models.DecoderLM`).

    Attributes (besides :class:`TransformerConfig`'s):
        tie_embeddings: the output head reuses the token embedding matrix (Press and Wolf 2017).
    """

    tie_embeddings: bool = True

    kind: ClassVar[str] = "decoder_lm"


@dataclass
class EncoderConfig(TransformerConfig):
    """A bidirectional encoder (:class:`~multihead.models.Encoder`).

    Attributes (besides :class:`TransformerConfig`'s):
        pooling: ``"mean"`` over real (unpadded) tokens, or ``"first"`` (a CLS-style token).
    """

    pooling: str = "mean"

    kind: ClassVar[str] = "encoder"

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice("pooling", self.pooling, POOLINGS)
