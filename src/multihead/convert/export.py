"""Writing multihead models as Hugging Face-format directories transformers loads.

:func:`to_pretrained` writes ``config.json`` and ``model.safetensors`` (and the tokenizer's
files when given one) through the same key table :func:`~multihead.convert.from_pretrained`
reads, unpacking packed matrices by their parameter roles.

Pruned models: transformers' configs hold one head count for all layers (BERT's
``pruned_heads`` is gone from transformers 5; Llama, Mistral and Qwen2 have scalar
``num_attention_heads`` / ``num_key_value_heads``), so no transformers model has per-layer
heads. A pruned model is therefore written in its unpruned layout with the removed heads
zeroed (:func:`~multihead.convert.heads.expand_heads`): transformers loads it and computes the
same outputs, but it is as large and as slow as the unpruned model. Its layout is recorded
under ``multihead_layer_heads`` in ``config.json`` (transformers ignores the key), so
``from_pretrained`` gives back the small pruned model. ``pruned="refuse"`` raises instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from multihead.convert.heads import check_heads_match_config, expand_heads
from multihead.convert.packing import packed_blocks, unpack_rows
from multihead.convert.pretrained import (
    LAYER_HEADS_KEY,
    LAYER_KV_HEADS_KEY,
    family_for_model,
    tied_aliases,
)
from multihead.convert.tokenizer import Tokenizer
from multihead.convert.weights import SINGLE
from multihead.models import TransformerStack

PRUNED = ("pad", "refuse")
_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _tokenizer_files(tokenizer: Tokenizer) -> dict[str, bytes]:
    """tokenizer.json and the minimal tokenizer_config.json / special_tokens_map.json that
    transformers' fast tokenizer reads the special tokens from."""
    backend = tokenizer.backend
    special = {
        f"{role}_token": backend.id_to_token(getattr(tokenizer, role))
        for role in ("cls", "sep", "pad", "bos", "eos", "unk", "mask")
        if getattr(tokenizer, role) is not None
    }
    config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", **special}
    if tokenizer.model_max_length is not None:
        config["model_max_length"] = tokenizer.model_max_length
    return {
        "tokenizer.json": backend.to_str(pretty=True).encode(),
        "tokenizer_config.json": json.dumps(config, indent=2).encode(),
        "special_tokens_map.json": json.dumps(special, indent=2).encode(),
    }


def to_pretrained(
    model: TransformerStack,
    path: str | os.PathLike,
    *,
    tokenizer: Tokenizer | None = None,
    pruned: str = "pad",
) -> Path:
    """Write ``model`` as a Hugging Face-format directory (created if missing; the files it
    writes are replaced one by one, atomically). Returns the directory.

    Args:
        model: a BERT-layout :class:`~multihead.models.Encoder` or a Llama-layout
            :class:`~multihead.models.DecoderLM` (e.g. one :func:`from_pretrained` built, then
            pruned or fine-tuned).
        path: the output directory.
        tokenizer: a :class:`~multihead.convert.Tokenizer` whose files to write beside.
        pruned: for a model with per-layer heads, ``"pad"`` writes the unpruned layout with
            the removed heads zeroed (transformers loads it; see the module docstring),
            ``"refuse"`` raises ValueError saying why transformers cannot hold it.

    Raises:
        TypeError: not a multihead model; a tokenizer of another kind.
        ValueError: an architecture transformers has no equivalent for (what differs is
            listed); a pruned model with ``pruned="refuse"``; modules whose heads do not
            match the config.
    """
    if pruned not in PRUNED:
        raise ValueError(f"pruned must be one of {PRUNED}, got {pruned!r}")
    if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
        raise TypeError(
            f"tokenizer must be a multihead.convert.Tokenizer (from tokenizer.json), got "
            f"{type(tokenizer).__name__}"
        )
    family = family_for_model(model)
    check_heads_match_config(model)
    cfg = model.config
    layout = None
    if not cfg.uniform_heads:
        if pruned == "refuse":
            raise ValueError(
                f"this model keeps {list(cfg.layer_head_counts)} query heads per layer; "
                "transformers' configs hold one head count for all layers (BERT's pruned_heads "
                "is gone from transformers 5, and Llama, Mistral and Qwen2 have none), so it "
                "cannot represent per-layer heads; pruned='pad' writes the unpruned layout "
                "with the removed heads zeroed"
            )
        layout = cfg
        model = expand_heads(model)
    hf = family.to_hf(model.config, getattr(model, "hf_config", None))
    hf.pop(LAYER_HEADS_KEY, None)
    hf.pop(LAYER_KV_HEADS_KEY, None)
    if layout is not None:
        kept = [layout.heads_of(i) for i in range(layout.num_layers)]
        hf[LAYER_HEADS_KEY] = [list(h.query) for h in kept]
        hf[LAYER_KV_HEADS_KEY] = [list(h.kv) for h in kept]
    p = next(model.parameters())
    hf["dtype"] = _DTYPE_NAMES.get(p.dtype, str(p.dtype).removeprefix("torch."))
    hf.pop("torch_dtype", None)

    blocks = packed_blocks(model)
    aliases = tied_aliases(model)
    tensors = {}
    for key, tensor in model.state_dict().items():
        if key in aliases:
            continue  # a tied head: transformers ties it to the embedding itself
        hf_keys = family.hf_keys(key, family.base_prefixes[0])
        if hf_keys is None:
            raise RuntimeError(f"the {family.name} key table has no entry for {key!r}")
        parts = unpack_rows(tensor, blocks[key]) if len(hf_keys) > 1 else [tensor]
        for hf_key, part in zip(hf_keys, parts):
            tensors[hf_key] = part.detach().to("cpu").contiguous()

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{SINGLE}.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, folder / SINGLE)
    _atomic_write(
        folder / "config.json", (json.dumps(hf, indent=2, sort_keys=True) + "\n").encode()
    )
    if tokenizer is not None:
        for name, data in _tokenizer_files(tokenizer).items():
            _atomic_write(folder / name, data)
    return folder
