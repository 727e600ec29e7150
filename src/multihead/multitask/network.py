"""MultiTaskNetwork: one shared trunk feeding named, isolated output heads (Caruana 1997).

Each head has its own parameters, its own loss (derived from its spec) and its own metrics; the
trunk is the only shared part. Loss weighting lives in :mod:`multihead.multitask.weighting`.

Legend: B batch, T tokens, F trunk features; ``P`` is a head's leading shape, ``(B,)`` for an
example-level head and ``(B, T)`` for a token-level head.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from multihead import _checks
from multihead.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from multihead.multitask.outputs import TRUNK, HeadOutputs, _named_specs
from multihead.multitask.specs import HeadSpec, masked_mean, spec_from_config
from multihead.multitask.trunks import build_trunk, describe_trunk, pool

KIND = "multitask"


class MultiTaskNetwork(nn.Module):
    """A shared trunk and named heads, each with its own parameters, loss and metrics.

    Args:
        trunk: any module returning features ``(B, F)`` or ``(B, T, F)`` (see
            :mod:`multihead.multitask.trunks` for the contract).
        heads: ``{name: spec}`` (or ``(name, spec)`` pairs); order is kept.
        features: F; default ``trunk.out_features``.
        trunk_mask_arg: name of the trunk's keyword argument that should receive the
            ``mask`` given to :meth:`forward` (True = real token), or None if the trunk takes no
            mask.

    Example:
        >>> import torch
        >>> from multihead.multitask import MLP, Binned, Classification, MultiTaskNetwork
        >>> _ = torch.manual_seed(0)
        >>> net = MultiTaskNetwork(
        ...     MLP(in_features=6, hidden=(32,)),
        ...     heads={"side": Classification(2), "leverage": Binned(100, low=0.02, high=2.0)},
        ... )
        >>> out = net(torch.randn(4, 6))
        >>> out["side"].shape, out["leverage"].shape
        (torch.Size([4, 2]), torch.Size([4, 100]))
        >>> sorted(net.predict(torch.randn(1, 6))[0])
        ['leverage', 'side']
    """

    def __init__(
        self,
        trunk: nn.Module,
        *,
        heads: Mapping[str, HeadSpec] | Iterable[tuple[str, HeadSpec]],
        features: int | None = None,
        trunk_mask_arg: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(trunk, nn.Module):
            raise TypeError(f"trunk must be an nn.Module, got {type(trunk).__name__}")
        if features is None:
            features = getattr(trunk, "out_features", None)
            if features is None:
                raise ValueError(
                    f"trunk {type(trunk).__name__} has no out_features attribute; pass "
                    "features=F, the width of the features it returns"
                )
        self.features = _checks.require_int("features", features, minimum=1)
        if trunk_mask_arg is not None and not isinstance(trunk_mask_arg, str):
            raise TypeError(f"trunk_mask_arg must be a string or None, got {trunk_mask_arg!r}")
        self.trunk_mask_arg = trunk_mask_arg
        self.trunk = trunk
        self.heads = nn.ModuleDict()
        self._specs: dict[str, HeadSpec] = {}
        for name, spec in _named_specs(heads):
            self._attach(name, spec)

    # --- structure ---------------------------------------------------------------------
    @property
    def specs(self) -> dict[str, HeadSpec]:
        """``{name: spec}`` in head order (a copy)."""
        return dict(self._specs)

    def _attach(self, name: str, spec: HeadSpec) -> nn.Module:
        module = spec.build(self.features)
        ref = next(self.trunk.parameters(), None)
        if ref is not None:
            module = module.to(device=ref.device, dtype=ref.dtype)
        self.heads[name] = module
        self._specs[name] = spec
        return module

    def add_head(self, name: str, spec: HeadSpec) -> nn.Module:
        """Add a freshly initialised head (e.g. to a trained network) and return its module.

        Add the new parameters to your optimizer (or make a new one). A common recipe is
        ``net.freeze("trunk")`` first, so the new head learns on the trained features.
        """
        ((name, spec),) = _named_specs([(name, spec)])
        if name in self._specs:
            raise ValueError(
                f"head name {name!r} collides with an existing head; the network has "
                f"{list(self._specs)}"
            )
        return self._attach(name, spec)

    def _part(self, name: str) -> nn.Module:
        if name == TRUNK:
            return self.trunk
        if name not in self._specs:
            raise ValueError(
                f"unknown part {name!r}; expected 'trunk' or a head name {list(self._specs)}"
            )
        return self.heads[name]

    def freeze(self, *names: str) -> None:
        """Stop gradients into the trunk and/or heads named (``"trunk"`` or a head name).

        Only ``requires_grad`` changes; dropout keeps following ``train()``/``eval()``.
        """
        for name in names:
            for p in self._part(name).parameters():
                p.requires_grad_(False)

    def unfreeze(self, *names: str) -> None:
        """Undo :meth:`freeze` for the parts named."""
        for name in names:
            for p in self._part(name).parameters():
                p.requires_grad_(True)

    @property
    def frozen(self) -> tuple[str, ...]:
        """Names of the parts whose parameters are all frozen."""
        out = []
        for name in (TRUNK, *self._specs):
            params = list(self._part(name).parameters())
            if params and not any(p.requires_grad for p in params):
                out.append(name)
        return tuple(out)

    def shared_parameters(self) -> list[nn.Parameter]:
        """The trunk's trainable parameters: what gradient-based weighting methods act on."""
        return [p for p in self.trunk.parameters() if p.requires_grad]

    # --- computation -------------------------------------------------------------------
    def forward(
        self,
        inputs: Any,
        *,
        mask: torch.Tensor | None = None,
        heads: Iterable[str] | None = None,
        **trunk_kwargs: Any,
    ) -> HeadOutputs:
        """Run the trunk once and the selected heads on its features.

        Args:
            inputs: whatever the trunk takes (e.g. ``(B, in_features)`` or token ids
                ``(B, T)``).
            mask: bool ``(B, T)`` for sequence trunks, **True = real token** (padding False):
                used by pooling and by token-level losses and metrics.
            heads: names of the heads to compute; default all.
            **trunk_kwargs: passed to the trunk.

        Returns:
            :class:`HeadOutputs` mapping each head name to its output.
        """
        names = self._select(heads)
        if mask is not None:
            _checks.require_tensor("mask", mask)
            if mask.dtype != torch.bool or mask.dim() != 2:
                raise TypeError(
                    f"mask must be a bool tensor (B, T) with True = real token, got dtype "
                    f"{mask.dtype} and shape {tuple(mask.shape)}"
                )
        if mask is not None and self.trunk_mask_arg is not None:
            trunk_kwargs[self.trunk_mask_arg] = mask
        features = self.trunk(inputs, **trunk_kwargs)
        self._check_features(features, mask)
        outputs: dict[str, torch.Tensor] = {}
        pooled: dict[str, torch.Tensor] = {}
        for name in names:
            spec = self._specs[name]
            if spec.level == "token":
                if features.dim() != 3:
                    raise ValueError(
                        f"head {name!r} is token-level but the trunk returned features of "
                        f"shape {tuple(features.shape)}; token-level heads need (B, T, F)"
                    )
                x = features
            elif features.dim() == 3:
                if spec.pooling not in pooled:
                    pooled[spec.pooling] = pool(features, mask, spec.pooling)  # (B, F)
                x = pooled[spec.pooling]
            else:
                x = features
            outputs[name] = spec.output(self.heads[name](x))
        return HeadOutputs(outputs, features=features, mask=mask if features.dim() == 3 else None)

    def _select(self, heads: Iterable[str] | None) -> list[str]:
        if heads is None:
            return list(self._specs)
        names = [heads] if isinstance(heads, str) else list(heads)
        unknown = [n for n in names if n not in self._specs]
        if unknown:
            raise ValueError(f"unknown heads {unknown}; the network has {list(self._specs)}")
        return names

    def _check_features(self, features: object, mask: torch.Tensor | None) -> None:
        if not isinstance(features, torch.Tensor):
            raise TypeError(
                f"the trunk returned {type(features).__name__}; a trunk must return a tensor "
                "(B, F) or (B, T, F)"
            )
        if features.dim() not in (2, 3) or features.shape[-1] != self.features:
            raise ValueError(
                f"the trunk returned features of shape {tuple(features.shape)} but (B, F) or "
                f"(B, T, F) with F = {self.features} is expected"
            )
        if mask is not None and (
            features.dim() != 3 or tuple(mask.shape) != tuple(features.shape[:2])
        ):
            raise ValueError(
                f"mask has shape {tuple(mask.shape)} but the trunk's features have shape "
                f"{tuple(features.shape)}; mask must be (B, T) for (B, T, F) features"
            )

    def _valid(self, name: str, outputs: HeadOutputs) -> torch.Tensor | None:
        return outputs.mask if self._specs[name].level == "token" else None

    def _targets(
        self, outputs: HeadOutputs, targets: Mapping[str, Any]
    ) -> Iterator[tuple[str, HeadSpec, torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        if not isinstance(outputs, HeadOutputs):
            raise TypeError(
                f"outputs must be the HeadOutputs returned by forward, got {type(outputs).__name__}"
            )
        if not isinstance(targets, Mapping):
            raise TypeError(f"targets must be a mapping {{head: target}}, got {type(targets)}")
        for name, target in targets.items():
            if name not in self._specs:
                raise ValueError(
                    f"targets name unknown head {name!r}; the network has {list(self._specs)}"
                )
            if name not in outputs:
                raise ValueError(
                    f"targets give head {name!r} but the forward pass did not compute it "
                    f"(computed {list(outputs)})"
                )
            spec, out = self._specs[name], outputs[name]
            valid = self._valid(name, outputs)
            t = spec.check_target(name, target, spec.prefix(out), valid)
            yield name, spec, out, t.to(out.device), valid

    def losses(self, outputs: HeadOutputs, targets: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Per-head scalar losses for the heads present in ``targets`` (a head may be left out
        of a batch that has no labels for it).

        Raises:
            ValueError, TypeError: unknown head, target of the wrong shape or dtype, a class
                index out of range, a value outside a binned or bounded range, NaN targets.
        """
        return {
            name: masked_mean(spec.elementwise_loss(out, t), valid)
            for name, spec, out, t, valid in self._targets(outputs, targets)
        }

    @torch.no_grad()
    def metrics(
        self, outputs: HeadOutputs, targets: Mapping[str, Any]
    ) -> dict[str, dict[str, float]]:
        """Per-head metrics, e.g. ``{"side": {"accuracy": 0.9, "nll": 0.3}, ...}``."""
        return {
            name: spec.metrics(out, t, valid)
            for name, spec, out, t, valid in self._targets(outputs, targets)
        }

    def decode(self, outputs: HeadOutputs) -> dict[str, torch.Tensor]:
        """Decoded tensors per head: class index, bin value, regression value, label mask."""
        return {name: self._specs[name].decode(out) for name, out in outputs.items()}

    @torch.no_grad()
    def predict(
        self, inputs: Any, *, mask: torch.Tensor | None = None, **trunk_kwargs: Any
    ) -> list[dict[str, Any]]:
        """Decoded predictions as plain Python values, one dict per example.

        Runs in eval mode (restoring the previous mode after). Example-level heads give a
        number (class index ``int``, bin value ``float``, regression ``float`` or list for
        ``dim > 1``, list of active labels for multi-label); token-level heads give a list with
        one value per real token.
        """
        was_training = self.training
        self.eval()
        try:
            outputs = self(inputs, mask=mask, **trunk_kwargs)
        finally:
            self.train(was_training)
        decoded = self.decode(outputs)
        batch = outputs.features.shape[0]
        rows: list[dict[str, Any]] = [{} for _ in range(batch)]
        for name, values in decoded.items():
            spec = self._specs[name]
            for b in range(batch):
                if spec.level == "token":
                    keep = (
                        range(values.shape[1])
                        if outputs.mask is None
                        else outputs.mask[b].nonzero().flatten().tolist()
                    )
                    rows[b][name] = [spec.to_python(values[b, t]) for t in keep]
                else:
                    rows[b][name] = spec.to_python(values[b])
        return rows

    # --- checkpoints -------------------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        """JSON-serializable description (heads as an ordered list of ``[name, spec]``)."""
        return {
            "features": self.features,
            "trunk": describe_trunk(self.trunk),
            "trunk_mask_arg": self.trunk_mask_arg,
            "heads": [[name, spec.to_config()] for name, spec in self._specs.items()],
            "frozen": list(self.frozen),
        }

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, trunk: nn.Module | None = None
    ) -> MultiTaskNetwork:
        """Build a fresh network from :meth:`to_config` output (weights not loaded)."""
        if trunk is None:
            if config.get("trunk") is None:
                raise ValueError(
                    "this network's trunk type is not registered, so the checkpoint cannot "
                    "rebuild it; pass trunk= (a module of the same shape) when loading"
                )
            trunk = build_trunk(config["trunk"])
        net = cls(
            trunk,
            heads=[(name, spec_from_config(spec)) for name, spec in config["heads"]],
            features=config["features"],
            trunk_mask_arg=config.get("trunk_mask_arg"),
        )
        net.freeze(*config.get("frozen", ()))
        return net

    def save(
        self,
        directory: str | os.PathLike,
        *,
        step: int = 0,
        state: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
        keep: int | None = 2,
    ) -> Path:
        """Save through :func:`multihead.checkpoint.save_checkpoint` (kind ``"multitask"``).

        ``state`` may carry training state, e.g. the optimizer's and a weighting strategy's
        ``state_dict()``.
        """
        return save_checkpoint(
            directory,
            model=self,
            kind=KIND,
            config=self.to_config(),
            step=step,
            state=state,
            meta=meta,
            keep=keep,
        )

    @classmethod
    def from_checkpoint(
        cls, checkpoint: Checkpoint, *, trunk: nn.Module | None = None, config_key: str = ""
    ) -> MultiTaskNetwork:
        """Rebuild a network from a loaded checkpoint and load its weights.

        ``config_key`` names where the network's config sits inside ``checkpoint.config`` when
        it is part of a larger checkpoint (e.g. ``"network"`` for a trading agent).
        """
        config = checkpoint.config[config_key] if config_key else checkpoint.config
        net = cls.from_config(config, trunk=trunk)
        checkpoint.load_into(net)
        return net

    @classmethod
    def load(
        cls, directory: str | os.PathLike, *, trunk: nn.Module | None = None
    ) -> MultiTaskNetwork:
        """Load a network saved by :meth:`save` (weights, heads, frozen parts)."""
        return cls.from_checkpoint(load_checkpoint(directory, kind=KIND), trunk=trunk)
