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
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from multihead import _checks
from multihead.positional import RopeScaling

POSITIONS = ("rope", "alibi", "sinusoidal", "learned", "none")
ACTIVATIONS = ("gelu", "swiglu")
NORMS = ("layernorm", "rmsnorm")
NORM_PLACEMENTS = ("pre", "post")
POOLINGS = ("mean", "first", "pooler")
# Fields written to a checkpoint's config.json only when set, so uniform configs keep the file
# format they had before per-layer heads existed.
_OMITTED_WHEN_NONE = ("layer_heads", "layer_kv_heads")
# Fields added for pretrained architectures (BERT, Llama-family), written only when they differ
# from these defaults, so every config that existed before them serializes exactly as before.
_OMITTED_AT_DEFAULT = {
    "norm_placement": "pre",
    "embedding_norm": False,
    "type_vocab_size": 0,
    "qkv_bias": None,
    "out_bias": None,
    "mlp_bias": None,
    "rope_scaling": None,
    "drophead": 0.0,
}


@dataclass(frozen=True)
class LayerHeads:
    """The attention heads of one layer, as :meth:`TransformerConfig.heads_of` gives them.

    Attributes:
        query: the original query-head ids the layer keeps, in order (``range(Hq)`` unpruned).
        kv: the original KV-head ids it keeps, in order.
        kv_index: for each kept query head, the index into ``kv`` of its KV head; None when
            the groups are the uniform ones (query head ``i`` uses KV head
            ``i // (num_q / num_kv)``), which is what every unpruned layer has.
    """

    query: tuple[int, ...]
    kv: tuple[int, ...]
    kv_index: tuple[int, ...] | None

    @property
    def num_q(self) -> int:
        return len(self.query)

    @property
    def num_kv(self) -> int:
        return len(self.kv)


@dataclass
class TransformerConfig:
    """Fields shared by decoders and encoders.

    Attributes:
        vocab_size: number of token ids.
        max_seq_len: longest sequence; bounds learned positions and sizes caches.
        d_model: model width E.
        num_layers: transformer blocks.
        num_heads: query heads Hq of an unpruned layer; must divide ``d_model`` unless
            ``head_dim`` is set.
        num_kv_heads: key/value heads Hkv of an unpruned layer (None = Hq); must divide
            ``num_heads`` (GQA/MQA).
        head_dim: D (None = d_model / num_heads). Pruning heads never changes it.
        ffn_dim: hidden width of the feed-forward (None = 4 E for GELU, about 8/3 E rounded
            up to a multiple of 8 for SwiGLU, which keeps the parameter count of 4 E GELU);
            0 = attention-only blocks, with no feed-forward and no norm before it (the
            models of Elhage et al. 2021 and Olsson et al. 2022, where circuits are read off
            the attention alone).
        activation: ``"gelu"`` or ``"swiglu"`` (Shazeer 2020).
        norm: ``"layernorm"`` or ``"rmsnorm"`` (Zhang and Sennrich 2019).
        norm_eps: epsilon of the norms.
        bias: biases in the linear layers (and LayerNorm's shift).
        qkv_bias: biases on attention's query/key/value projections (None = ``bias``;
            Qwen2 has them without an output bias).
        out_bias: bias on attention's output projection (None = ``bias``).
        mlp_bias: biases in the feed-forward (None = ``bias``; Llama's ``mlp_bias``).
        norm_placement: ``"pre"`` (``x + f(norm(x))``, the default) or ``"post"``
            (``norm(x + f(x))``, the original Transformer's and BERT's). Post-norm blocks
            end normalized, so the stack then has no final norm.
        embedding_norm: a norm after the embeddings (BERT's embedding LayerNorm).
        type_vocab_size: token types (BERT's segment embeddings) added to the token
            embeddings; 0 = none.
        position: ``"rope"``, ``"alibi"``, ``"sinusoidal"``, ``"learned"`` or ``"none"``.
        rope_base: RoPE frequency base.
        rope_fraction: fraction of each head's channels RoPE rotates (partial rotary).
        rope_interleaved: RoPE pairs ``(2i, 2i+1)`` instead of ``(i, i + R/2)``.
        rope_scaling: a :class:`~multihead.positional.RopeScaling` (or a dict of its fields)
            for long contexts (``"linear"``, ``"llama3"``); None = unscaled.
        window: sliding attention window W (each query sees W keys), None for full attention.
        dropout: dropout after attention and feed-forward, and on embeddings.
        attn_dropout: dropout on attention weights.
        drophead: in training, the probability of dropping each whole attention head of
            each example, the kept heads scaled by 1 / (1 - drophead) (DropHead, Zhou et al.
            2020); in [0, 1). The training run's ``drophead_schedule`` varies it over the steps.
        backend: attention backend name (``"auto"``, ``"sdpa"``, ``"blockwise"``, ``"math"``).
        layer_heads: per layer, the *original* query-head ids it keeps (ids in
            ``[0, num_heads)``, no duplicates, in the order the layer holds them); None = every
            layer has all ``num_heads``. A pruned model is an ordinary model with this set.
        layer_kv_heads: per layer, the original KV-head ids it keeps (None = the KV heads its
            query heads use, in the order of their first query head). A kept query head's KV
            head must be kept, and every kept KV head must serve at least one kept query
            head. Groups may become uneven.

    Example (a pruned layout: layer 0 keeps query heads 0, 1 and 3 of 4, grouped-query with
    2 KV heads, so KV head 1 now serves one query head and KV head 0 two):
        >>> cfg = TransformerConfig(num_layers=2, num_heads=4, num_kv_heads=2,
        ...                         layer_heads=[[0, 1, 3], [0, 1, 2, 3]])
        >>> cfg.heads_of(0)
        LayerHeads(query=(0, 1, 3), kv=(0, 1), kv_index=(0, 0, 1))
        >>> cfg.heads_of(1).kv_index is None                      # uniform groups
        True
        >>> cfg.layer_head_counts
        (3, 4)
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
    layer_heads: tuple[tuple[int, ...], ...] | None = None
    layer_kv_heads: tuple[tuple[int, ...], ...] | None = None
    norm_placement: str = "pre"
    embedding_norm: bool = False
    type_vocab_size: int = 0
    qkv_bias: bool | None = None
    out_bias: bool | None = None
    mlp_bias: bool | None = None
    rope_scaling: RopeScaling | None = None
    drophead: float = 0.0

    kind: ClassVar[str] = "transformer"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_seq_len", "d_model", "num_layers", "num_heads"):
            _checks.require_int(name, getattr(self, name), minimum=1)
        if self.head_dim is None and self.d_model % self.num_heads:
            raise ValueError(
                f"num_heads={self.num_heads} does not divide d_model={self.d_model}; choose "
                "num_heads dividing d_model or set head_dim"
            )
        for name in ("num_kv_heads", "head_dim"):
            if getattr(self, name) is not None:
                _checks.require_int(name, getattr(self, name), minimum=1)
        if self.ffn_dim is not None:
            _checks.require_int("ffn_dim", self.ffn_dim, minimum=0)  # 0 = attention-only
        if self.window is not None:
            _checks.require_positive_int("window", self.window)  # the rule masks and caches use
        if self.num_kv_heads is not None and self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_kv_heads={self.num_kv_heads} does not divide num_heads="
                f"{self.num_heads}; each KV head must serve a whole group of query heads"
            )
        _checks.require_choice("activation", self.activation, ACTIVATIONS)
        _checks.require_choice("norm", self.norm, NORMS)
        _checks.require_choice("position", self.position, POSITIONS)
        for name in ("bias", "rope_interleaved", "embedding_norm"):
            _checks.require_bool(name, getattr(self, name))
        for name in ("qkv_bias", "out_bias", "mlp_bias"):
            if getattr(self, name) is not None:
                _checks.require_bool(name, getattr(self, name))
        _checks.require_choice("norm_placement", self.norm_placement, NORM_PLACEMENTS)
        _checks.require_int("type_vocab_size", self.type_vocab_size, minimum=0)
        self.rope_scaling = RopeScaling.build(self.rope_scaling)
        if self.rope_scaling is not None and self.position != "rope":
            raise ValueError(
                f"rope_scaling is set but position={self.position!r}; it scales RoPE only"
            )
        _checks.require_number("norm_eps", self.norm_eps, above=0)
        _checks.require_number("rope_base", self.rope_base, above=1)
        _checks.require_number("rope_fraction", self.rope_fraction, above=0, maximum=1)
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
        _checks.require_probability("dropout", self.dropout)
        _checks.require_probability("attn_dropout", self.attn_dropout)
        _checks.require_probability("drophead", self.drophead)
        if not isinstance(self.backend, str):
            raise TypeError(f"backend must be a string, got {type(self.backend).__name__}")
        from multihead.backends import available_backends

        if self.backend != "auto" and self.backend not in available_backends():
            raise ValueError(
                f"backend must be 'auto' or one of {available_backends()}, got {self.backend!r}"
            )
        self.layer_heads = _per_layer_ids(
            "layer_heads", self.layer_heads, self.num_layers, self.num_heads
        )
        self.layer_kv_heads = _per_layer_ids(
            "layer_kv_heads", self.layer_kv_heads, self.num_layers, self.kv_heads
        )
        for layer in range(self.num_layers):
            self.heads_of(layer)  # a kept query head's KV head is kept, and none is idle

    # ------------------------------------------------------------------ derived sizes
    @property
    def head_size(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.num_heads

    @property
    def kv_heads(self) -> int:
        """KV heads of an unpruned layer."""
        return self.num_kv_heads if self.num_kv_heads is not None else self.num_heads

    @property
    def rotary_dim(self) -> int:
        return round(self.head_size * self.rope_fraction)

    @property
    def ffn_size(self) -> int:
        """The feed-forward's hidden width; 0 for attention-only blocks."""
        if self.ffn_dim is not None:
            return self.ffn_dim
        if self.activation == "swiglu":
            return -(-int(8 * self.d_model / 3) // 8) * 8
        return 4 * self.d_model

    @property
    def attention_only(self) -> bool:
        """The blocks have no feed-forward (``ffn_dim=0``)."""
        return self.ffn_size == 0

    @property
    def has_qkv_bias(self) -> bool:
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def has_out_bias(self) -> bool:
        return self.bias if self.out_bias is None else self.out_bias

    @property
    def has_mlp_bias(self) -> bool:
        return self.bias if self.mlp_bias is None else self.mlp_bias

    # ------------------------------------------------------------------ per-layer heads
    @property
    def uniform_heads(self) -> bool:
        """Every layer has all ``num_heads`` query and ``kv_heads`` KV heads in order."""
        return all(
            h.query == tuple(range(self.num_heads)) and h.kv == tuple(range(self.kv_heads))
            for h in map(self.heads_of, range(self.num_layers))
        )

    @property
    def layer_head_counts(self) -> tuple[int, ...]:
        """Query heads of each layer."""
        return tuple(self.heads_of(i).num_q for i in range(self.num_layers))

    def heads_of(self, layer: int) -> LayerHeads:
        """The heads layer ``layer`` keeps: original query and KV ids, and the query-to-KV
        mapping (see :class:`LayerHeads`).

        Raises:
            ValueError: ``layer`` out of range, or the layer keeps a query head without its
                KV head, or a KV head that no kept query head uses.
        """
        _checks.require_int("layer", layer, minimum=0)
        if layer >= self.num_layers:
            raise ValueError(f"layer must be in [0, num_layers={self.num_layers}), got {layer}")
        group = self.num_heads // self.kv_heads  # query heads per KV head, unpruned
        query = (
            tuple(range(self.num_heads)) if self.layer_heads is None else self.layer_heads[layer]
        )
        if self.layer_kv_heads is None:
            # In the order of their first kept query head, so that reordering the heads of
            # a layer without GQA keeps the mapping uniform.
            kv = tuple(dict.fromkeys(h // group for h in query))
        else:
            kv = self.layer_kv_heads[layer]
        position = {k: i for i, k in enumerate(kv)}
        missing = sorted({h // group for h in query} - set(kv))
        if missing:
            raise ValueError(
                f"layer_kv_heads[{layer}]={list(kv)} drops KV heads {missing} that kept query "
                f"heads of layer_heads[{layer}]={list(query)} use (query head h uses KV head "
                f"h // {group}); keep them or drop their query heads"
            )
        idle = sorted(set(kv) - {h // group for h in query})
        if idle:
            raise ValueError(
                f"layer_kv_heads[{layer}]={list(kv)} keeps KV heads {idle} that no kept query "
                f"head of layer_heads[{layer}]={list(query)} uses; drop them"
            )
        kv_index = tuple(position[h // group] for h in query)
        if not query:  # an emptied layer (pruning asked for it explicitly)
            return LayerHeads(query, kv, None)
        if len(query) % len(kv) == 0:
            per = len(query) // len(kv)
            if kv_index == tuple(i // per for i in range(len(query))):
                return LayerHeads(query, kv, None)
        return LayerHeads(query, kv, kv_index)

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``layer_heads``/``layer_kv_heads`` appear only when set (as
        lists), and the pretrained-architecture fields (``norm_placement``...) only when not
        at their defaults, so older configs write the same file as before these existed."""
        data = dataclasses.asdict(self)
        for name in _OMITTED_WHEN_NONE:
            if data[name] is None:
                del data[name]
            else:
                data[name] = [list(ids) for ids in data[name]]
        for name, default in _OMITTED_AT_DEFAULT.items():
            if getattr(self, name) == default:
                del data[name]
        if self.rope_scaling is not None:
            data["rope_scaling"] = self.rope_scaling.to_dict()
        return data

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


def _per_layer_ids(
    name: str, value: Any, num_layers: int, num_ids: int
) -> tuple[tuple[int, ...], ...] | None:
    """Validate per-layer head ids (a sequence of ``num_layers`` sequences of distinct ids in
    ``[0, num_ids)``) and return them as tuples (JSON gives lists back)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(
            f"{name} must be None or a sequence of {num_layers} sequences of head ids, got "
            f"{type(value).__name__}"
        )
    if len(value) != num_layers:
        raise ValueError(
            f"{name} has {len(value)} entries but num_layers={num_layers}; give one sequence "
            "of head ids per layer"
        )
    out = []
    for layer, ids in enumerate(value):
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
            raise TypeError(
                f"{name}[{layer}] must be a sequence of head ids, got {type(ids).__name__}"
            )
        for h in ids:
            _checks.require_int(f"{name}[{layer}] entries", h, minimum=0)
        bad = [h for h in ids if h >= num_ids]
        if bad:
            raise ValueError(
                f"{name}[{layer}]={list(ids)} has ids {bad} out of range [0, {num_ids})"
            )
        dupes = sorted({h for h in ids if list(ids).count(h) > 1})
        if dupes:
            raise ValueError(f"{name}[{layer}]={list(ids)} repeats head ids {dupes}")
        out.append(tuple(ids))
    return tuple(out)


@dataclass
class DecoderConfig(TransformerConfig):
    """A causal language model (:class:`~multihead.models.DecoderLM`).

    Attributes (besides :class:`TransformerConfig`'s):
        tie_embeddings: the output head reuses the token embedding matrix (Press and Wolf 2017).
    """

    tie_embeddings: bool = True

    kind: ClassVar[str] = "decoder_lm"

    def __post_init__(self) -> None:
        super().__post_init__()
        _checks.require_bool("tie_embeddings", self.tie_embeddings)


@dataclass
class EncoderConfig(TransformerConfig):
    """A bidirectional encoder (:class:`~multihead.models.Encoder`).

    Attributes (besides :class:`TransformerConfig`'s):
        pooling: ``"mean"`` over real (unpadded) tokens, ``"first"`` (a CLS-style token), or
            ``"pooler"``: BERT's pooler, ``tanh(W x_0 + b)`` on the first token (a learned
            ``pooler`` layer).
    """

    pooling: str = "mean"

    kind: ClassVar[str] = "encoder"

    def __post_init__(self) -> None:
        super().__post_init__()
        _checks.require_choice("pooling", self.pooling, POOLINGS)
