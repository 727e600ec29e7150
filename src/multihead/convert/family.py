"""Architecture families: what a Hugging Face ``config.json`` of each family means as a
multihead config, and where each multihead parameter lives in its checkpoints.

A :class:`Family` holds ONE key table: multihead state-dict key (``blocks.{i}.`` for layer
``i``) -> the Hugging Face key template(s) it comes from, ``{base}`` standing for the base
model's prefix (``bert.``, ``model.`` or none) and ``{i}`` for the layer. A tuple of templates
is a packed parameter: its blocks, top to bottom (:mod:`multihead.convert.packing`). Loading
and saving both read this table, so the two directions cannot drift apart.

The families live in :mod:`multihead.convert.bert` and :mod:`multihead.convert.llama`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from multihead.models import TransformerConfig

KeyTable = Mapping[str, str | tuple[str, ...]]
_LAYER = re.compile(r"^blocks\.(\d+)\.")


@dataclass(frozen=True)
class Family:
    """One architecture family.

    Attributes:
        name: ``"bert"`` or ``"llama"``.
        model_types: the ``config.json`` ``model_type`` values it reads.
        model_class: the multihead model it builds (``Encoder``, ``DecoderLM``).
        base_prefixes: prefixes of the base model's keys, tried in order (``"bert."`` in a
            ``BertForMaskedLM`` checkpoint, ``""`` in a ``BertModel`` one).
        keys: the key table (see the module docstring).
        ignored: key templates of buffers older writers saved (``position_ids``,
            ``rotary_emb.inv_freq``): read past, never loaded.
        to_config: ``(config.json dict, stored names without the base prefix) -> config``.
        to_hf: ``(config, the config.json it came from or None) -> config.json dict``.
        unsupported: ``config -> reasons`` this family cannot represent it (empty = it can).
        tied_head: the key of the output head, which checkpoints of tied models may store
            too (it is the embedding then, and is not read); None when there is no head.
    """

    name: str
    model_types: tuple[str, ...]
    model_class: type[nn.Module]
    base_prefixes: tuple[str, ...]
    keys: KeyTable
    ignored: tuple[str, ...]
    to_config: Callable[[dict[str, Any], frozenset[str]], TransformerConfig]
    to_hf: Callable[[TransformerConfig, dict[str, Any] | None], dict[str, Any]]
    unsupported: Callable[[TransformerConfig], list[str]]
    tied_head: str | None = None

    def base_of(self, names: frozenset[str]) -> str:
        """The base prefix a checkpoint uses: the first whose token embedding is stored
        (the first candidate when none is, so the missing key is reported under it)."""
        embed = str(self.keys["embed.tokens.weight"])  # a plain (unpacked) key in every family
        for base in self.base_prefixes:
            if embed.format(base=base) in names:
                return base
        return self.base_prefixes[0]

    def hf_keys(self, key: str, base: str) -> tuple[str, ...] | None:
        """The Hugging Face key(s) of multihead key ``key`` (a tuple of one for a plain
        parameter), or None when the table has no entry for it."""
        match = _LAYER.match(key)
        pattern = _LAYER.sub("blocks.{i}.", key) if match else key
        entry = self.keys.get(pattern)
        if entry is None:
            return None
        layer = match.group(1) if match else None
        templates = (entry,) if isinstance(entry, str) else entry
        return tuple(t.format(base=base, i=layer) for t in templates)

    def is_ignored(self, name: str, base: str) -> bool:
        for template in self.ignored:
            pattern = re.escape(template.format(base=base, i="{i}")).replace(r"\{i\}", r"\d+")
            if re.fullmatch(pattern, name):
                return True
        return False


def hf_value(hf: Mapping[str, Any], key: str, default: Any) -> Any:
    """``hf[key]``, or ``default`` when it is absent or null (transformers' own default)."""
    value = hf.get(key)
    return default if value is None else value


def unsupported_value(hf: Mapping[str, Any], key: str, value: Any, supported: str) -> ValueError:
    return ValueError(
        f"config.json has {key}={value!r}, which multihead does not convert (supported: "
        f"{supported})"
    )
