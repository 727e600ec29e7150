"""Parameter roles: what each parameter is for, declared by the module that owns it.

Initialization (GPT-2's scaled residual projections) and optimizer groups (Muon for hidden
matrices, AdamW with or without weight decay for the rest) key on these roles, never on
parameter names, so renaming an attribute or wrapping a model (``nn.Sequential(model)``,
DDP, ``torch.compile``) changes neither.

A module declares roles by defining ``parameter_roles()``, yielding ``(parameter, Role)`` for
parameters it owns directly or through its children (a MultiHeadAttention knows that its
``in_proj`` Linear holds the packed ``[W_q; W_k; W_v]``; a bare Linear does not). Parameters
nobody declares get a default from the type of the module that holds them: embeddings are
``embedding``, norm layers' gains and shifts ``norm``, and otherwise a 2-D or larger weight is
a ``matrix`` and anything smaller a ``bias``.

Example:
    >>> from torch import nn
    >>> from multihead import MultiHeadAttention
    >>> from multihead.roles import parameter_roles
    >>> model = nn.Sequential(MultiHeadAttention(8, 2, num_kv_heads=1), nn.LayerNorm(8))
    >>> for name, _, role in parameter_roles(model):
    ...     print(name, role)
    0.in_proj.weight Role(kind='matrix', residual=False, blocks=(8, 4, 4))
    0.in_proj.bias Role(kind='bias', residual=False, blocks=None)
    0.out_proj.weight Role(kind='matrix', residual=True, blocks=None)
    0.out_proj.bias Role(kind='bias', residual=False, blocks=None)
    1.weight Role(kind='norm', residual=False, blocks=None)
    1.bias Role(kind='norm', residual=False, blocks=None)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from multihead import _checks

KINDS = ("embedding", "output", "matrix", "norm", "bias")


@dataclass(frozen=True)
class Role:
    """What a parameter is for.

    Attributes:
        kind: ``"embedding"`` (a lookup table), ``"output"`` (the output head), ``"matrix"``
            (a hidden linear map: what Muon is for), ``"norm"`` (a norm layer's gain or
            shift) or ``"bias"``.
        residual: the matrix writes into the residual stream (attention's output projection,
            the feed-forward's down projection); GPT-2 scales their initialization by
            ``1 / sqrt(2 L)`` (Radford et al. 2019).
        blocks: for a packed matrix, the row count of each block, top to bottom (e.g.
            ``(Hq D, Hkv D, Hkv D)`` for ``[W_q; W_k; W_v]``, ``(F, F)`` for SwiGLU's
            ``[gate; up]``); each block is a separate linear map, which Muon orthogonalizes on
            its own. None = one matrix.
    """

    kind: str
    residual: bool = False
    blocks: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _checks.require_choice("kind", self.kind, KINDS)
        _checks.require_bool("residual", self.residual)
        if self.residual and self.kind != "matrix":
            raise ValueError(f"residual=True is for kind='matrix', got kind={self.kind!r}")
        if self.blocks is not None:
            if self.kind != "matrix":
                raise ValueError(f"blocks are for kind='matrix', got kind={self.kind!r}")
            blocks = tuple(_checks.require_int("blocks entries", b, minimum=1) for b in self.blocks)
            object.__setattr__(self, "blocks", blocks)

    @property
    def decays(self) -> bool:
        """Weight decay applies (matrices and embeddings; decaying norm gains and biases only
        fights the normalization)."""
        return self.kind in ("embedding", "output", "matrix")

    def packed(self, blocks: Iterable[int]) -> Role:
        """This role for a matrix packing blocks of these row counts."""
        return dataclasses.replace(self, blocks=tuple(blocks))

    def check(self, name: str, param: torch.Tensor) -> None:
        """Raise ValueError if ``param``'s shape cannot have this role."""
        if self.blocks is not None and (param.dim() != 2 or sum(self.blocks) != param.shape[0]):
            raise ValueError(
                f"{name} has shape {tuple(param.shape)} but its role packs row blocks "
                f"{self.blocks} (sum {sum(self.blocks)}); expected a 2-D matrix with that many rows"
            )


EMBEDDING = Role("embedding")
OUTPUT = Role("output")
MATRIX = Role("matrix")
RESIDUAL = Role("matrix", residual=True)
NORM = Role("norm")
BIAS = Role("bias")

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._NormBase,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def default_role(module: nn.Module, param: nn.Parameter) -> Role:
    """The role of a direct parameter of ``module`` that no module declared."""
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return EMBEDDING
    if isinstance(module, _NORM_TYPES):
        return NORM
    return MATRIX if param.dim() >= 2 else BIAS


def parameter_roles(model: nn.Module) -> list[tuple[str, nn.Parameter, Role]]:
    """Every parameter of ``model`` once (shared ones under their first name), in
    ``named_parameters()`` order, with its role.

    Raises:
        ValueError: two modules declare different roles for one parameter, or a declared
            role does not fit the parameter's shape (both named).
    """
    names = {id(p): n for n, p in model.named_parameters()}
    declared: dict[int, tuple[Role, str]] = {}
    for owner, module in model.named_modules():
        declare = getattr(module, "parameter_roles", None)
        if not callable(declare):
            continue
        for param, role in declare():
            if not isinstance(role, Role):
                raise TypeError(
                    f"{type(module).__name__}.parameter_roles() must yield (Parameter, Role) "
                    f"pairs, got a {type(role).__name__}"
                )
            key = id(param)
            previous = declared.get(key)
            if previous is not None and previous[0] != role:
                raise ValueError(
                    f"parameter {names[key]!r} is declared {previous[0]} by {previous[1]!r} "
                    f"and {role} by {owner or type(module).__name__!r}"
                )
            role.check(names[key], param)
            declared[key] = (role, owner or type(module).__name__)
    out = []
    seen: set[int] = set()
    for owner, module in model.named_modules():
        for local, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            role = declared[id(param)][0] if id(param) in declared else default_role(module, param)
            out.append((f"{owner}.{local}" if owner else local, param, role))
    return out  # the traversal named_parameters() makes, so the same order and names
