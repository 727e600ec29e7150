"""Head selection: the one place that slices head weights.

:meth:`MultiHeadAttention.select_heads <multihead.attention.MultiHeadAttention.select_heads>`
calls :func:`select_heads`; pruning, tensor-parallel sharding and checkpoint conversion call
that method, so nothing else in multihead indexes weights by head.

Legend: Hq query heads, Hkv key/value heads, D head dim, E model width. A module's
query-to-KV map is ``kv_index (Hq,)``: query head ``h`` reads KV head ``kv_index[h]``. ``None``
means the uniform GQA layout the core serves directly (``kv_index[h] = h // (Hq / Hkv)``);
any other map (uneven or interleaved groups) makes the module expand K/V per query head before
the core (the cache still stores Hkv heads).

Example:
    >>> import torch
    >>> from multihead import MultiHeadAttention
    >>> mha = MultiHeadAttention(32, 4, num_kv_heads=2)          # kv_index 0, 0, 1, 1
    >>> _ = mha.select_heads([0, 2, 3])                          # a group of 1 and one of 2
    >>> mha.num_heads, mha.num_kv_heads, mha.kv_index.tolist(), tuple(mha.W_Q.shape)
    (3, 2, [0, 1, 1], (3, 32, 8))
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from multihead.attention import MultiHeadAttention

HeadIds = Sequence[int] | torch.Tensor


def head_ids(name: str, ids: object, count: int, what: str) -> list[int]:
    """Validate a list of head ids against ``count`` heads; returns them as Python ints.

    Raises TypeError for anything but a sequence (or 1-D tensor) of integers and ValueError
    for ids out of range or listed twice, naming ``name``."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1 or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise TypeError(
                f"{name} must be a sequence or 1-D integer tensor of head ids, got a tensor of "
                f"shape {tuple(ids.shape)} and dtype {ids.dtype}"
            )
        ids = ids.tolist()
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise TypeError(f"{name} must be a sequence of integer head ids, got {type(ids).__name__}")
    out: list[int] = []
    seen: set[int] = set()
    for i, h in enumerate(ids):
        if isinstance(h, bool) or not isinstance(h, numbers.Integral):
            raise TypeError(f"{name}[{i}] = {h!r} is not an integer head id")
        h = int(h)
        if not 0 <= h < count:
            raise ValueError(
                f"{name}[{i}] = {h} is out of range: this module has {count} {what} heads "
                f"(ids 0..{count - 1})"
            )
        if h in seen:
            raise ValueError(f"{name} lists head {h} twice; each head can be kept once")
        seen.add(h)
        out.append(h)
    return out


def uniform_kv_map(num_heads: int, num_kv_heads: int) -> list[int]:
    """The uniform GQA map ``[h // (Hq / Hkv) for h in range(Hq)]``."""
    groups = num_heads // num_kv_heads
    return [h // groups for h in range(num_heads)]


def check_kv_index(
    kv_index: object, num_heads: int, num_kv_heads: int, device: torch.device | str | None = None
) -> torch.Tensor | None:
    """Validate a query-to-KV map; returns it as an int64 tensor ``(Hq,)``, or None when it is
    the uniform layout (so uniform modules take the core's GQA path unchanged).

    Raises ValueError unless it has one entry per query head, every entry names a KV head, and
    every KV head serves at least one query head; without a map Hkv must divide Hq."""
    if kv_index is None:
        if num_heads and num_heads % num_kv_heads:
            raise ValueError(
                f"num_kv_heads={num_kv_heads} must divide num_heads={num_heads} (each KV head "
                "serves num_heads / num_kv_heads query heads), or pass kv_index for uneven groups"
            )
        return None
    ids = list(kv_index.tolist()) if isinstance(kv_index, torch.Tensor) else kv_index
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence) or len(ids) != num_heads:
        got = len(ids) if isinstance(ids, Sequence) else type(ids).__name__
        raise ValueError(
            f"kv_index must list the KV head of each of the num_heads={num_heads} query heads, "
            f"got {got if isinstance(got, str) else f'{got} entries'}"
        )
    for i, h in enumerate(ids):
        if isinstance(h, bool) or not isinstance(h, numbers.Integral) or not 0 <= h < num_kv_heads:
            raise ValueError(
                f"kv_index[{i}] = {h!r} is not a KV head id in [0, num_kv_heads={num_kv_heads})"
            )
    unused = sorted(set(range(num_kv_heads)) - {int(h) for h in ids})
    if unused:
        raise ValueError(
            f"kv_index {list(ids)} leaves KV heads {unused} without query heads; drop them "
            "(num_kv_heads counts only the KV heads in use)"
        )
    ids = [int(h) for h in ids]
    if num_heads % num_kv_heads == 0 and ids == uniform_kv_map(num_heads, num_kv_heads):
        return None
    return torch.tensor(ids, dtype=torch.long, device=device)


def _rows(heads: list[int], head_dim: int, device: torch.device) -> torch.Tensor:
    """Row indices ``(len(heads) * D,)`` of the given heads in a ``(H * D, ...)`` weight."""
    h = torch.tensor(heads, dtype=torch.long, device=device)
    return (h[:, None] * head_dim + torch.arange(head_dim, device=device)).flatten()  # (H'*D,)


def _set_weight(linear: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Give ``linear`` new parameters (an optimizer built before selection must be rebuilt)."""
    linear.weight = nn.Parameter(weight, requires_grad=linear.weight.requires_grad)
    if linear.bias is not None and bias is not None:
        linear.bias = nn.Parameter(bias, requires_grad=linear.bias.requires_grad)
    linear.out_features, linear.in_features = weight.shape


def _select_part(part: object, name: str, index: torch.Tensor, num_heads: int) -> object:
    """A copy of an injected part holding only the selected heads, or the part itself when it
    holds no per-head state. Copied so that a part shared with other layers is left intact."""
    if part is None:
        return None
    heads = getattr(part, "num_heads", None)
    per_head = heads == num_heads and num_heads != 1
    has_select = callable(getattr(part, "select_heads", None))
    if per_head and not has_select:
        raise TypeError(
            f"{name} ({type(part).__name__}) has num_heads={heads}, one entry per query head, "
            "but no select_heads(index) method; implement it so selection can slice its "
            "per-head state"
        )
    if not (has_select and (per_head or heads is None)):
        return part
    new = copy.deepcopy(part)
    result = new.select_heads(index)
    return new if result is None else result


def select_heads(
    mha: MultiHeadAttention, query_heads: HeadIds, kv_heads: HeadIds | None = None
) -> MultiHeadAttention:
    """Keep the listed heads of ``mha`` in place and return it (see
    :meth:`MultiHeadAttention.select_heads`). Everything is validated before anything
    changes, so a refused selection leaves the module as it was."""
    hq, hkv, d = mha.num_heads, mha.num_kv_heads, mha.head_dim
    q_ids = head_ids("query_heads", query_heads, hq, "query")
    current = mha.kv_index.tolist() if mha.kv_index is not None else uniform_kv_map(hq, hkv)
    if kv_heads is None:
        kv_ids = list(dict.fromkeys(current[q] for q in q_ids))  # in order of first use
    else:
        kv_ids = head_ids("kv_heads", kv_heads, hkv, "KV")
        kept = set(kv_ids)
        for q in q_ids:
            if current[q] not in kept:
                raise ValueError(
                    f"query head {q} is kept but its KV head {current[q]} is not in kv_heads "
                    f"{kv_ids}; keep KV head {current[q]} or drop query head {q}"
                )
        used = {current[q] for q in q_ids}
        for j in kv_ids:
            if j not in used:
                group = [h for h in range(hq) if current[h] == j]
                raise ValueError(
                    f"KV head {j} is kept but none of its query heads {group} is; a KV head "
                    "needs at least one query head"
                )
    new_map = [kv_ids.index(current[q]) for q in q_ids]
    device = mha.out_proj.weight.device
    index = torch.tensor(q_ids, dtype=torch.long, device=device)
    rotary = _select_part(mha.rotary, "rotary", index, hq)
    position_bias = _select_part(mha.position_bias, "position_bias", index, hq)
    kv_index = check_kv_index(new_map, len(q_ids), len(kv_ids), device) if q_ids else None

    q_rows, kv_rows = _rows(q_ids, d, device), _rows(kv_ids, d, device)
    with torch.no_grad():
        if mha.packed:
            lin = mha.in_proj
            w_q, w_k, w_v = lin.weight.split(mha._sizes, dim=0)
            weight = torch.cat((w_q[q_rows], w_k[kv_rows], w_v[kv_rows]))  # (Hq'*D+2*Hkv'*D, E)
            bias = None
            if lin.bias is not None:
                b_q, b_k, b_v = lin.bias.split(mha._sizes)
                bias = torch.cat((b_q[q_rows], b_k[kv_rows], b_v[kv_rows]))
            _set_weight(lin, weight, bias)
        else:
            for lin, rows in ((mha.q_proj, q_rows), (mha.k_proj, kv_rows), (mha.v_proj, kv_rows)):
                bias = None if lin.bias is None else lin.bias[rows]
                _set_weight(lin, lin.weight[rows], bias)
        out = mha.out_proj
        _set_weight(out, out.weight[:, q_rows], None)  # (E, Hq'*D); the bias is per output
    mha.num_heads, mha.num_kv_heads = len(q_ids), len(kv_ids)
    mha._sizes = (len(q_ids) * d, len(kv_ids) * d, len(kv_ids) * d)
    mha.kv_index = kv_index
    mha.rotary = rotary
    mha.position_bias = position_bias
    return mha
