"""One loader for every command that takes ``--checkpoint``: a multihead checkpoint (written by
``multihead train`` / :func:`multihead.checkpoint.save_checkpoint`) or a Hugging Face-format
directory, told apart by what the directory holds, each with its tokenizer.

Example:
    >>> import tempfile, torch
    >>> from multihead.checkpoint import save_checkpoint
    >>> from multihead.models import DecoderConfig, DecoderLM
    >>> model = DecoderLM(DecoderConfig(vocab_size=256, d_model=16, num_layers=1, num_heads=2))
    >>> d = tempfile.mkdtemp()
    >>> _ = save_checkpoint(d, model=model, kind="decoder_lm", config=model.config.to_dict(),
    ...                     step=1, meta={"task": "text"})
    >>> loaded, tok = load_model(d)
    >>> checkpoint_format(d), type(loaded).__name__, tok
    ('multihead', 'DecoderLM', ByteTokenizer(vocab_size=256))
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from multihead import _checks
from multihead.checkpoint import LATEST, load_checkpoint, resolve_step_dir
from multihead.convert.byte_tokenizer import ByteTokenizer
from multihead.convert.pretrained import from_pretrained
from multihead.convert.tokenizer import Tokenizer, load_tokenizer
from multihead.models import (
    DecoderConfig,
    DecoderLM,
    Encoder,
    EncoderConfig,
    TransformerStack,
)

AnyTokenizer = Tokenizer | ByteTokenizer


def checkpoint_format(path: str | os.PathLike) -> str:
    """``"multihead"`` or ``"huggingface"``: which kind of checkpoint directory ``path`` is.

    Raises:
        FileNotFoundError: the directory, or its config.json, is missing.
        ValueError: a config.json that is neither kind's.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint directory {str(folder)!r} does not exist")
    if (folder / LATEST).is_file():
        return "multihead"
    file = folder / "config.json"
    if not file.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} has neither config.json nor {LATEST}: expected a multihead "
            "checkpoint or a Hugging Face-format directory"
        )
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON ({err})") from None
    if isinstance(doc, dict) and {"format", "kind", "config"} <= doc.keys():
        return "multihead"
    if isinstance(doc, dict) and ("model_type" in doc or "architectures" in doc):
        return "huggingface"
    raise ValueError(
        f"{file} is neither a multihead checkpoint config ('format', 'kind', 'config') nor a "
        "Hugging Face one ('model_type')"
    )


def _multihead(folder: Path, verify: bool) -> tuple[TransformerStack, AnyTokenizer | None]:
    ckpt = load_checkpoint(folder, verify=verify)
    raw = ckpt.config.get("model", ckpt.config)
    classes = {
        DecoderConfig.kind: (DecoderConfig, DecoderLM),
        EncoderConfig.kind: (EncoderConfig, Encoder),
    }
    if ckpt.kind not in classes:
        raise ValueError(
            f"checkpoint {ckpt.path} holds a {ckpt.kind!r}; a model checkpoint holds one of "
            f"{sorted(classes)}"
        )
    config_cls, model_cls = classes[ckpt.kind]
    try:
        config = config_cls.from_dict(raw)
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {ckpt.path} has an invalid model config: {err}") from None
    model = model_cls(config)
    ckpt.load_into(model)
    step_dir = resolve_step_dir(folder)
    tokenizer: AnyTokenizer | None = None
    for where in (step_dir, folder):
        if (where / "tokenizer.json").is_file():
            tokenizer = load_tokenizer(where)
            break
    else:
        if ckpt.meta.get("task", "text") == "text" and config.vocab_size == 256:
            tokenizer = ByteTokenizer()
    return model.eval(), tokenizer


def load_model(
    path: str | os.PathLike,
    *,
    dtype: torch.dtype | str | None = None,
    require_tokenizer: bool = False,
    verify: bool = True,
) -> tuple[TransformerStack, AnyTokenizer | None]:
    """The model and tokenizer of a checkpoint directory, in eval mode.

    A multihead checkpoint gives its DecoderLM or Encoder and the tokenizer.json beside it,
    or for a byte-level text model (vocabulary 256) a :class:`ByteTokenizer`, or None (a
    synthetic-task model reads token ids); with ``verify`` (the default) each file of a
    multihead checkpoint is checked against its manifest's SHA-256 first (``verify=False``
    skips that, for speed, on files you trust). A Hugging Face directory gives
    :func:`from_pretrained`'s model (``dtype`` applies to it) and its tokenizer.json, or None.

    Raises:
        FileNotFoundError: a missing directory or file; no tokenizer with
            ``require_tokenizer=True``.
        ValueError: anything :func:`from_pretrained` or the checkpoint reader refuses.
    """
    folder = Path(path)
    if checkpoint_format(folder) == "multihead":
        model, tokenizer = _multihead(folder, _checks.require_bool("verify", verify))
    else:
        model = from_pretrained(folder, dtype=dtype)
        tokenizer = load_tokenizer(folder) if (folder / "tokenizer.json").is_file() else None
    if tokenizer is None and require_tokenizer:
        raise FileNotFoundError(
            f"{str(folder)!r} has no tokenizer.json, and this command needs a tokenizer to "
            "read text (write one with transformers: AutoTokenizer.from_pretrained(dir)."
            "save_pretrained(dir))"
        )
    return model, tokenizer
