"""Hugging Face-format directories <-> multihead models.

:func:`from_pretrained` reads ``config.json`` and safetensors weights (never a pickle) of a
BERT-family encoder or a Llama-family decoder and returns the multihead model built by
:mod:`multihead.models` — no second copy of the layer code. The model is built with its
parameters on the meta device (no memory) and each weight is read from the memory-mapped file
and assigned into place, so a model never needs its size twice in memory. Separate q/k/v and
gate/up matrices are packed by :mod:`multihead.convert.packing`, in the blocks the modules'
parameter roles declare.

:func:`to_pretrained` writes a directory transformers loads (``BertModel``,
``LlamaForCausalLM``, ``MistralForCausalLM``, ``Qwen2ForCausalLM``).

Example (a tiny BERT-layout encoder, written and read back):
    >>> import tempfile, torch
    >>> from multihead.convert import to_pretrained
    >>> from multihead.models import Encoder, EncoderConfig
    >>> _ = torch.manual_seed(0)
    >>> cfg = EncoderConfig(vocab_size=30, max_seq_len=16, d_model=16, num_layers=2,
    ...                     num_heads=2, position="learned", norm_placement="post",
    ...                     embedding_norm=True, type_vocab_size=2, pooling="pooler")
    >>> enc = Encoder(cfg).eval()
    >>> d = to_pretrained(enc, tempfile.mkdtemp())
    >>> sorted(p.name for p in d.iterdir())
    ['config.json', 'model.safetensors']
    >>> back = from_pretrained(d)
    >>> tokens = torch.randint(0, 30, (2, 7))
    >>> torch.equal(back(tokens)[0], enc(tokens)[0])
    True
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_parameter_registration_hook

from multihead.convert.bert import BERT
from multihead.convert.family import Family
from multihead.convert.heads import select_layer_heads
from multihead.convert.llama import LLAMA
from multihead.convert.packing import pack_rows, packed_blocks
from multihead.convert.weights import WeightFiles
from multihead.models import TransformerConfig, TransformerStack

FAMILIES = (BERT, LLAMA)
SUPPORTED_MODEL_TYPES = tuple(t for f in FAMILIES for t in f.model_types)
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
# config.json keys recording a pruned model's heads, which transformers' configs cannot hold:
# transformers reads the padded layout and ignores these; from_pretrained prunes again.
LAYER_HEADS_KEY = "multihead_layer_heads"
LAYER_KV_HEADS_KEY = "multihead_layer_kv_heads"


def read_hf_config(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint directory as a dict."""
    file = folder / "config.json"
    if not file.is_file():
        raise FileNotFoundError(
            f"no config.json in {str(folder)!r}; expected a Hugging Face-format checkpoint "
            "directory (config.json + model.safetensors)"
        )
    try:
        hf = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON ({err})") from None
    if not isinstance(hf, dict):
        raise ValueError(f"{file} holds a JSON {type(hf).__name__}; expected an object")
    return hf


def family_of(hf: Mapping[str, Any], file: Path) -> Family:
    """The family of a ``config.json`` by its ``model_type``; an error names the supported
    ones."""
    model_type = hf.get("model_type")
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    archs = hf.get("architectures")
    raise ValueError(
        f"{file} has model_type={model_type!r} (architectures={archs}); multihead converts "
        f"model types {list(SUPPORTED_MODEL_TYPES)} (BertModel and the Bert* task models' "
        "encoders; LlamaForCausalLM, SmolLM, MistralForCausalLM, Qwen2ForCausalLM)"
    )


def resolve_dtype(dtype: object) -> torch.dtype | None:
    if dtype is None:
        return None
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    raise ValueError(
        f"dtype must be None (the checkpoint's), torch.float32, torch.bfloat16 or "
        f"torch.float16 (or one of {sorted(DTYPES)}), got {dtype!r}"
    )


@contextmanager
def _parameters_on_meta():
    """Modules built inside get their parameters on the meta device (shape only, no memory;
    initialization is then a no-op) while buffers stay real: RoPE frequencies and the like
    are functions of the config that checkpoints do not carry. The hook is process-wide
    while active (torch has no per-thread one), so build nothing else on other threads
    meanwhile."""

    def to_meta(module: nn.Module, name: str, param: nn.Parameter | None):
        if param is None or param.is_meta:
            return None
        return nn.Parameter(torch.empty_like(param, device="meta"), param.requires_grad)

    handle = register_module_parameter_registration_hook(to_meta)
    try:
        yield
    finally:
        handle.remove()


def tied_aliases(model: nn.Module) -> dict[str, str]:
    """State-dict key -> the key it shares its tensor with (a tied head), for the later ones."""
    first: dict[int, str] = {}
    out = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in first:
            out[key] = first[id(tensor)]
        else:
            first[id(tensor)] = key
    return out


def _plan(
    model: nn.Module, family: Family, files: WeightFiles, base: str
) -> dict[str, tuple[str, ...]]:
    """Multihead key -> its Hugging Face keys, after checking names and shapes against the
    config; one ValueError lists every problem. Keys outside the base model that the table
    does not read (a task head: ``cls.*``, ``classifier.*``) are skipped with a warning."""
    blocks = packed_blocks(model)
    aliases = tied_aliases(model)
    plan, problems, missing = {}, [], []
    for key, tensor in model.state_dict().items():
        if key in aliases:
            continue
        hf_keys = family.hf_keys(key, base)
        if hf_keys is None:
            raise RuntimeError(f"the {family.name} key table has no entry for {key!r}")
        if len(hf_keys) > 1 and len(hf_keys) != len(blocks.get(key, ())):
            raise RuntimeError(f"the {family.name} key table packs {key!r} wrongly")
        plan[key] = hf_keys
        rows = blocks.get(key, (tensor.shape[0],) if tensor.dim() else ())
        for hf_key, n in zip(hf_keys, rows or (None,)):
            if hf_key not in files.names:
                missing.append(hf_key)
                continue
            want = tuple(tensor.shape) if len(hf_keys) == 1 else (n, *tensor.shape[1:])
            got = files.shape(hf_key)
            if got != want:
                problems.append(f"tensor {hf_key!r} has shape {got} but config.json implies {want}")
    read = {k for keys in plan.values() for k in keys}
    left = sorted(n for n in files.names - read if not family.is_ignored(n, base))
    unexpected = [n for n in left if n.startswith(base)] if base else left
    heads = [n for n in left if base and not n.startswith(base)]
    if family.tied_head is not None and getattr(model.config, "tie_embeddings", False):
        # A tied checkpoint may store its head anyway: it is the embedding.
        unexpected = [n for n in unexpected if n != family.tied_head]
        heads = [n for n in heads if n != family.tied_head]
    if missing:
        problems.insert(0, f"missing tensors {missing[:8]}" + (" ..." if len(missing) > 8 else ""))
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:8]}" + (" ..." * (len(unexpected) > 8)))
    if problems:
        raise ValueError(
            f"the weights in {str(files.folder)!r} do not match its config.json "
            f"({family.name} family): " + "; ".join(problems[:10])
        )
    if heads:
        warnings.warn(
            f"{str(files.folder)!r}: skipping {len(heads)} tensors outside the base model "
            f"(a task head, e.g. {heads[:3]}); multihead loads the {family.name} base model",
            stacklevel=3,
        )
    return plan


def _checkpoint_dtype(files: WeightFiles, keys: list[str], hf: Mapping[str, Any]) -> torch.dtype:
    found = {files.dtype(k) for k in keys} & {torch.float32, torch.bfloat16, torch.float16}
    others = {files.dtype(k) for k in keys} - found
    declared = DTYPES.get(str(hf.get("dtype") or hf.get("torch_dtype")))
    if others:
        raise ValueError(
            f"the checkpoint stores {sorted(map(str, others))} weights; multihead loads "
            "float32, bfloat16 and float16: pass dtype= to convert them"
        )
    if len(found) == 1:
        return found.pop()
    if declared in found:
        return declared
    raise ValueError(
        f"the checkpoint mixes weight dtypes {sorted(map(str, found))}; pass dtype= to choose one"
    )


def _load(model: nn.Module, plan: dict[str, tuple[str, ...]], files: WeightFiles, dtype) -> None:
    """Read each weight, pack it, and assign it into ``model`` (built on meta) in ``dtype``."""
    blocks = packed_blocks(model)
    aliases = tied_aliases(model)
    state = {}
    for key, hf_keys in plan.items():
        parts = [(k, files.get(k).to(dtype)) for k in hf_keys]
        state[key] = pack_rows(key, parts, blocks[key]) if len(parts) > 1 else parts[0][1]
    for alias, primary in aliases.items():
        state[alias] = state[primary]
    model.load_state_dict(state, strict=True, assign=True)
    for alias, primary in aliases.items():  # assign gave each name its own Parameter: re-tie
        owner, _, attr = alias.rpartition(".")
        setattr(model.get_submodule(owner), attr, model.get_parameter(primary))
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if meta:
        raise RuntimeError(f"tensors left unloaded on the meta device: {meta[:5]}")


def from_pretrained(
    path: str | os.PathLike,
    *,
    dtype: torch.dtype | str | None = None,
    verify: str | Mapping[str, str] | None = None,
) -> TransformerStack:
    """A multihead model from a Hugging Face-format checkpoint directory, in eval mode.

    Args:
        path: a directory with ``config.json`` and ``model.safetensors`` (or shards with
            ``model.safetensors.index.json``).
        dtype: ``torch.float32``, ``torch.bfloat16`` or ``torch.float16`` (or ``"fp32"``,
            ``"bf16"``, ``"fp16"``...); None keeps the checkpoint's.
        verify: the sha256 the weights must have (one digest, or ``{file name: digest}`` for
            shards), checked before anything is read; None checks nothing.

    Returns:
        an :class:`~multihead.models.Encoder` (BERT family) or a
        :class:`~multihead.models.DecoderLM` (Llama family: Llama, SmolLM, Mistral, Qwen2),
        with ``hf_config`` holding the ``config.json`` it came from. A directory written by
        :func:`to_pretrained` from a pruned model gives the pruned model again.

    Raises:
        FileNotFoundError: no config.json, no weights, a missing shard.
        ValueError: an unknown architecture (the supported ones named), an option multihead
            does not convert, weights that do not match the config (missing or unexpected
            keys, shapes: named), only pickled weights (refused unopened), a damaged file, a
            sha256 mismatch, an unsupported dtype.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint directory {str(folder)!r} does not exist")
    target = resolve_dtype(dtype)
    hf = read_hf_config(folder)
    family = family_of(hf, folder / "config.json")
    files = WeightFiles(folder, verify=verify)
    base = family.base_of(files.names)
    stored = frozenset(n[len(base) :] if n.startswith(base) else n for n in files.names)
    try:
        config = family.to_config(hf, stored)
    except KeyError as err:
        raise ValueError(f"{folder / 'config.json'} has no {err.args[0]!r} entry") from None
    except (TypeError, ValueError) as err:
        raise ValueError(f"{folder / 'config.json'}: {err}") from None
    with _parameters_on_meta():
        model = family.model_class(config)
    plan = _plan(model, family, files, base)
    keys = [k for ks in plan.values() for k in ks]
    _load(model, plan, files, target or _checkpoint_dtype(files, keys, hf))
    if hf.get(LAYER_HEADS_KEY) is not None:
        select_layer_heads(model, hf[LAYER_HEADS_KEY], hf.get(LAYER_KV_HEADS_KEY))
    model.hf_config = hf
    return model.eval()


def family_for_model(model: nn.Module) -> Family:
    """The family that can hold ``model``; ValueError says what transformers cannot
    represent when none can."""
    cfg = getattr(model, "config", None)
    if not isinstance(model, TransformerStack) or not isinstance(cfg, TransformerConfig):
        raise TypeError(
            f"model must be a multihead Encoder or DecoderLM, got {type(model).__name__}"
        )
    reasons = {}
    for family in FAMILIES:
        if isinstance(model, family.model_class):
            why = family.unsupported(cfg)
            if not why:
                return family
            reasons[family.name] = why
    detail = "; ".join(f"as {name}: {', '.join(why)}" for name, why in reasons.items())
    raise ValueError(
        f"transformers has no architecture for this {type(model).__name__}: {detail or 'none'}. "
        "to_pretrained writes BERT-family encoders (learned positions, post-norm LayerNorm, "
        "GELU, embedding norm, token types) and Llama-family decoders (half-split RoPE, "
        "RMSNorm, SwiGLU, pre-norm)"
    )
