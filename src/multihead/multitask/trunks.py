"""Trunks: the shared part of a multi-task network, and how sequence features are pooled.

**The trunk contract.** A trunk is any ``nn.Module`` whose forward returns features

* ``(B, F)``: one feature vector per example (e.g. :class:`MLP`), or
* ``(B, T, F)``: one per token (e.g. a transformer encoder or a decoder's hidden states).

Example-level heads read ``(B, F)`` directly and pool ``(B, T, F)`` (see :func:`pool`);
token-level heads need ``(B, T, F)``. ``F`` comes from ``trunk.out_features`` or from the
network's ``features=`` argument.

To save a network and rebuild it from the checkpoint alone, the trunk's type is registered
with :func:`register_trunk` (``MLP`` is); otherwise pass the trunk when loading.

Legend: B batch, T tokens, F features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from multihead import _checks

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}


@dataclass(frozen=True)
class MLPConfig:
    """Sizes of an :class:`MLP` trunk.

    Args:
        in_features: width of the input ``(B, in_features)``.
        hidden: widths of the hidden layers; the last is the trunk's ``out_features``.
        activation: one of ``relu``, ``gelu``, ``tanh``, ``silu``.
        dropout: dropout after each activation, in [0, 1).
        layer_norm: a LayerNorm before each activation.
    """

    in_features: int
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "gelu"
    dropout: float = 0.0
    layer_norm: bool = False

    def __post_init__(self) -> None:
        _checks.require_int("in_features", self.in_features, minimum=1)
        if not isinstance(self.hidden, (tuple, list)):
            raise TypeError(
                f"hidden must be a tuple of layer widths, got {type(self.hidden).__name__}"
            )
        if not self.hidden:
            raise ValueError("hidden must name at least one layer width, got ()")
        for i, w in enumerate(self.hidden):
            _checks.require_int(f"hidden[{i}]", w, minimum=1)
        # JSON gives lists back; keep the frozen dataclass hashable and comparable.
        object.__setattr__(self, "hidden", tuple(self.hidden))
        _checks.require_choice("activation", self.activation, tuple(sorted(ACTIVATIONS)))
        _checks.require_probability("dropout", self.dropout)
        _checks.require_bool("layer_norm", self.layer_norm)


class MLP(nn.Module):
    """A feed-forward trunk: ``(B, in_features)`` -> ``(B, hidden[-1])``.

    Example:
        >>> import torch
        >>> trunk = MLP(in_features=8, hidden=(32, 16))
        >>> trunk(torch.randn(4, 8)).shape, trunk.out_features
        (torch.Size([4, 16]), 16)
    """

    def __init__(
        self,
        *,
        in_features: int,
        hidden: tuple[int, ...] = (64, 64),
        activation: str = "gelu",
        dropout: float = 0.0,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.config = MLPConfig(
            in_features=in_features,
            hidden=hidden,
            activation=activation,
            dropout=dropout,
            layer_norm=layer_norm,
        )
        layers: list[nn.Module] = []
        width = in_features
        for out in self.config.hidden:
            layers.append(nn.Linear(width, out))
            if layer_norm:
                layers.append(nn.LayerNorm(out))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = out
        self.layers = nn.Sequential(*layers)
        self.out_features = width

    @classmethod
    def from_config(cls, config: MLPConfig | dict[str, Any]) -> MLP:
        cfg = config if isinstance(config, MLPConfig) else MLPConfig(**config)
        return cls(**asdict(cfg))

    def to_config(self) -> dict[str, Any]:
        return asdict(self.config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _checks.require_tensor("x", x)
        if x.dim() != 2 or x.shape[-1] != self.config.in_features:
            raise ValueError(
                f"x has shape {tuple(x.shape)} but (B, in_features) = "
                f"(B, {self.config.in_features}) is expected"
            )
        return self.layers(x)


@dataclass(frozen=True)
class TrunkType:
    """How to describe a trunk type in a checkpoint and rebuild it."""

    kind: str
    cls: type[nn.Module]
    to_config: Callable[[nn.Module], dict[str, Any]]
    from_config: Callable[[dict[str, Any]], nn.Module]


_TRUNKS: dict[str, TrunkType] = {}


def register_trunk(
    kind: str,
    cls: type[nn.Module],
    *,
    to_config: Callable[[Any], dict[str, Any]],
    from_config: Callable[[dict[str, Any]], nn.Module],
) -> None:
    """Let networks with a ``cls`` trunk be saved and rebuilt from their checkpoint alone.

    The trunk module needs no knowledge of heads; e.g. for an encoder::

        register_trunk("encoder", Encoder,
                       to_config=lambda m: asdict(m.config),
                       from_config=lambda c: Encoder(EncoderConfig(**c)))
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind must be a non-empty string, got {kind!r}")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"cls must be an nn.Module subclass, got {cls!r}")
    _TRUNKS[kind] = TrunkType(kind, cls, to_config, from_config)


def describe_trunk(trunk: nn.Module) -> dict[str, Any] | None:
    """``{"kind": ..., "config": ...}`` for a registered trunk type, else None."""
    # The most specific registered class wins (a subclass may register its own kind).
    for entry in sorted(_TRUNKS.values(), key=lambda e: -len(e.cls.__mro__)):
        if isinstance(trunk, entry.cls):
            return {"kind": entry.kind, "config": entry.to_config(trunk)}
    return None


def build_trunk(description: dict[str, Any]) -> nn.Module:
    """Inverse of :func:`describe_trunk`."""
    kind = description.get("kind")
    entry = _TRUNKS.get(kind)  # type: ignore[arg-type]
    if entry is None:
        raise ValueError(
            f"trunk kind {kind!r} is not registered (known: {sorted(_TRUNKS)}); register it "
            "with multihead.multitask.register_trunk or pass trunk= when loading"
        )
    return entry.from_config(description["config"])


register_trunk("mlp", MLP, to_config=MLP.to_config, from_config=MLP.from_config)


class TransformerTrunk(nn.Module):
    """A multihead :class:`~multihead.models.Encoder` or :class:`~multihead.models.DecoderLM`
    as a trunk: token ids ``(B, T)`` -> hidden states ``(B, T, E)``.

    Pass ``trunk_mask_arg="padding_mask"`` to the network so that its ``mask`` (True = real
    token) reaches the model; example-level heads then pool over real tokens only (use
    ``pooling="last"`` on a causal decoder, whose last real token has seen the whole input).

    Example:
        >>> import torch
        >>> from multihead.models import Encoder, EncoderConfig
        >>> from multihead.multitask import Classification, MultiTaskNetwork
        >>> enc = Encoder(EncoderConfig(vocab_size=20, d_model=16, num_layers=1, num_heads=2))
        >>> net = MultiTaskNetwork(
        ...     TransformerTrunk(enc),
        ...     heads={"label": Classification(3), "tags": Classification(5, level="token")},
        ...     trunk_mask_arg="padding_mask",
        ... )
        >>> tokens = torch.randint(0, 20, (2, 7))
        >>> out = net(tokens, mask=torch.tensor([[True] * 7, [True] * 4 + [False] * 3]))
        >>> out["label"].shape, out["tags"].shape
        (torch.Size([2, 3]), torch.Size([2, 7, 5]))
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not callable(getattr(model, "hidden_states", None)) or not hasattr(model, "config"):
            raise TypeError(
                f"model must be a multihead Encoder or DecoderLM (with hidden_states and "
                f"config), got {type(model).__name__}"
            )
        self.model = model
        self.out_features = model.config.d_model

    def forward(
        self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.model.hidden_states(tokens, padding_mask=padding_mask)  # (B, T, E)


def _transformer_to_config(trunk: TransformerTrunk) -> dict[str, Any]:
    return {"model": trunk.model.config.kind, "config": trunk.model.config.to_dict()}


def _transformer_from_config(config: dict[str, Any]) -> TransformerTrunk:
    # Imported here: heads needs models only when such a trunk is rebuilt.
    from multihead.models import DecoderConfig, DecoderLM, Encoder, EncoderConfig

    kinds = {
        DecoderConfig.kind: (DecoderLM, DecoderConfig),
        EncoderConfig.kind: (Encoder, EncoderConfig),
    }
    if config.get("model") not in kinds:
        raise ValueError(
            f"transformer trunk model must be one of {sorted(kinds)}, got {config.get('model')!r}"
        )
    cls, cfg = kinds[config["model"]]
    return TransformerTrunk(cls(cfg.from_dict(config["config"])))


register_trunk(
    "transformer",
    TransformerTrunk,
    to_config=_transformer_to_config,
    from_config=_transformer_from_config,
)


def pool(features: torch.Tensor, mask: torch.Tensor | None, how: str) -> torch.Tensor:
    """Reduce token features ``(B, T, F)`` to ``(B, F)``.

    Args:
        features: ``(B, T, F)``.
        mask: bool ``(B, T)``, **True = a real token** (padding is False); None = all real.
        how: ``"mean"`` over real tokens, ``"first"`` token, ``"last"`` real token, ``"max"``
            over real tokens. An example with no real token pools to zeros.

    Example:
        >>> import torch
        >>> f = torch.arange(6.0).view(1, 3, 2)           # (B, T, F)
        >>> m = torch.tensor([[True, True, False]])
        >>> pool(f, m, "mean"), pool(f, m, "last")
        (tensor([[1., 2.]]), tensor([[2., 3.]]))
    """
    b, t, _ = features.shape
    if mask is None:
        mask = torch.ones(b, t, dtype=torch.bool, device=features.device)
    m = mask.unsqueeze(-1)  # (B, T, 1)
    if how == "mean":
        w = m.to(features.dtype)
        return (features * w).sum(1) / w.sum(1).clamp(min=1.0)
    if how == "first":
        return features[:, 0]
    if how == "last":
        positions = torch.arange(t, device=features.device).expand(b, t)
        last = torch.where(mask, positions, -1).max(dim=1).values  # (B,)
        out = features[torch.arange(b, device=features.device), last.clamp(min=0)]
        return out * (last >= 0).unsqueeze(-1).to(features.dtype)
    if how == "max":
        out = features.masked_fill(~m, float("-inf")).max(dim=1).values
        return torch.where(mask.any(1, keepdim=True), out, torch.zeros_like(out))
    raise ValueError(f"pooling must be one of ('mean', 'first', 'last', 'max'), got {how!r}")
