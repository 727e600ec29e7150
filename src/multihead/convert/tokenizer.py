"""A checkpoint's tokenizer, from its tokenizer.json, with the ``tokenizers`` package only.

:func:`load_tokenizer` reads a Hugging Face-format directory (or a tokenizer.json path) and
returns a :class:`Tokenizer`, whose ``encode`` gives the ids transformers' fast tokenizer gives
(with ``padding=True``), padded on the right to the longest text, as tensors. Special-token
roles (``cls``, ``sep``, ``pad``, ``bos``, ``eos``, ``unk``, ``mask``) come from the directory's
special_tokens_map.json / tokenizer_config.json when present, else from conventional names
(``[CLS]``, ``<s>``...); a role the tokenizer lacks is None.

The padding and truncation settings stored in a tokenizer.json (MiniLM's pads every text to
128) are ignored, as transformers ignores them unless asked: ``encode`` pads to the longest
text and truncates only to an explicit ``max_length``.

Example:
    >>> import tokenizers
    >>> from tokenizers.models import WordLevel
    >>> from tokenizers.pre_tokenizers import Whitespace
    >>> vocab = {"[UNK]": 0, "hi": 1, "you": 2}
    >>> backend = tokenizers.Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    >>> backend.pre_tokenizer = Whitespace()
    >>> tok = Tokenizer(backend)
    >>> enc = tok.encode(["hi you", "hi"])
    >>> enc.ids.tolist(), enc.attention_mask.tolist()
    ([[1, 2], [1, 0]], [[True, True], [True, False]])
    >>> tok.unk, tok.pad, tok.vocab_size
    (0, None, 3)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from multihead.convert.encoding import (
    Encoded,
    _Row,
    check_bool,
    check_ids,
    check_max_length,
    check_texts,
    pad_rows,
)

ROLES = ("cls", "sep", "pad", "bos", "eos", "unk", "mask")
# Used only when the directory names no token for a role.
_CONVENTIONAL = {
    "cls": ("[CLS]",),
    "sep": ("[SEP]",),
    "pad": ("[PAD]", "<pad>", "<|pad|>"),
    "bos": ("<s>", "<|begin_of_text|>"),
    "eos": ("</s>", "<|end_of_text|>", "<|endoftext|>"),
    "unk": ("[UNK]", "<unk>"),
    "mask": ("[MASK]", "<mask>"),
}
# transformers writes a huge number as model_max_length when a model sets none.
_NO_MAX_LENGTH = 10**9


def _import_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as err:
        raise ImportError(
            "multihead.convert needs the 'tokenizers' package to read tokenizer.json: "
            "pip install tokenizers"
        ) from err
    return tokenizers


class Tokenizer:
    """A ``tokenizers.Tokenizer`` behind the interface multihead's analysis uses.

    Args:
        backend: a ``tokenizers.Tokenizer``; it is copied, so later changes to it (or its
            padding/truncation settings) do not reach this wrapper.
        special_tokens: role (one of :data:`ROLES`) -> token string or id, overriding the
            conventional names.
        model_max_length: the longest input the model takes, if known (informative: ``encode``
            truncates only to its own ``max_length``).
        name: shown in ``repr``.

    Attributes: ``vocab_size``, ``pad_id`` (the id padding uses: ``pad``, else ``eos``, else 0),
    one attribute per role (its id or None), ``special_ids`` (every special token's id).
    """

    def __init__(
        self,
        backend: Any,
        *,
        special_tokens: Mapping[str, str | int] | None = None,
        model_max_length: int | None = None,
        name: str = "",
    ) -> None:
        tokenizers = _import_tokenizers()
        if not isinstance(backend, tokenizers.Tokenizer):
            raise TypeError(f"backend must be a tokenizers.Tokenizer, got {type(backend).__name__}")
        self._backend = tokenizers.Tokenizer.from_str(backend.to_str())
        self._backend.no_padding()
        self._backend.no_truncation()
        self.name = name
        self.model_max_length = model_max_length
        self.vocab_size: int = self._backend.get_vocab_size(with_added_tokens=True)
        given = dict(special_tokens or {})
        for role in given:
            if role not in ROLES:
                raise ValueError(f"special_tokens has unknown role {role!r}; expected {ROLES}")
        for role in ROLES:
            setattr(self, role, self._role_id(role, given.get(role)))
        added = self._backend.get_added_tokens_decoder()
        roles = {getattr(self, r) for r in ROLES} - {None}
        self.special_ids = frozenset(roles | {i for i, t in added.items() if t.special})
        self.pad_id: int = next((i for i in (self.pad, self.eos) if i is not None), 0)

    cls: int | None
    sep: int | None
    pad: int | None
    bos: int | None
    eos: int | None
    unk: int | None
    mask: int | None

    def _role_id(self, role: str, token: str | int | None) -> int | None:
        if token is None:
            found = (self._backend.token_to_id(t) for t in _CONVENTIONAL[role])
            return next((i for i in found if i is not None), None)
        if isinstance(token, int) and not isinstance(token, bool):
            check_ids([token], self.vocab_size)
            return token
        if not isinstance(token, str):
            raise TypeError(f"special_tokens[{role!r}] must be a str or int, got {token!r}")
        token_id = self._backend.token_to_id(token)
        if token_id is None:
            raise ValueError(f"special_tokens[{role!r}] = {token!r} is not in the vocabulary")
        return token_id

    def __repr__(self) -> str:
        roles = ", ".join(f"{r}={getattr(self, r)}" for r in ROLES if getattr(self, r) is not None)
        return f"Tokenizer({self.name!r}, vocab_size={self.vocab_size}, {roles})"

    @property
    def backend(self) -> Any:
        """The wrapped ``tokenizers.Tokenizer`` (padding and truncation off)."""
        return self._backend

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        max_length: int | None = None,
        add_special_tokens: bool = True,
    ) -> Encoded:
        """Tokenize ``texts`` (one str or a sequence of B str) into a padded :class:`Encoded`.

        ``max_length`` truncates each text to at most that many tokens, special tokens
        included (None: no truncation); ``add_special_tokens`` adds ``[CLS]``/``[SEP]`` (or
        the model's own) as the tokenizer's post-processor says.
        """
        texts = check_texts(texts)
        check_bool("add_special_tokens", add_special_tokens)
        n_special = self._backend.num_special_tokens_to_add(False) if add_special_tokens else 0
        max_length = check_max_length(max_length, n_special + 1)
        if max_length is None:
            encs = self._backend.encode_batch(texts, add_special_tokens=add_special_tokens)
        else:
            # Truncate the text's tokens, then add the special tokens (what tokenizers does).
            encs = self._backend.encode_batch(texts, add_special_tokens=False)
            for e in encs:
                e.truncate(max_length - n_special)
            encs = [self._backend.post_process(e, None, add_special_tokens) for e in encs]
        rows = []
        for e in encs:
            special = [bool(s) for s in e.special_tokens_mask]
            offsets = [None if s or a == b else (a, b) for s, (a, b) in zip(special, e.offsets)]
            word_ids = [None if s else w for s, w in zip(special, e.word_ids)]
            rows.append(_Row(list(e.ids), list(e.tokens), word_ids, offsets, special))
        pad_token = self._backend.id_to_token(self.pad_id) or ""
        return pad_rows(texts, rows, self.pad_id, pad_token)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """The text of a 1-D sequence (or tensor) of token ids."""
        check_bool("skip_special_tokens", skip_special_tokens)
        values = check_ids(ids, self.vocab_size)
        return self._backend.decode(values, skip_special_tokens=skip_special_tokens)

    def id_to_token(self, token_id: int) -> str:
        (value,) = check_ids([token_id], self.vocab_size)
        return self._backend.id_to_token(value)

    def token_to_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err}); expected a JSON file") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
        ) from err


def _directory_special_tokens(folder: Path, backend: Any) -> tuple[dict[str, str], int | None]:
    """Role -> token from special_tokens_map.json, then tokenizer_config.json (a token
    missing from the vocabulary is passed over); and the config's model_max_length."""
    roles: dict[str, str] = {}
    max_length = None
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        data = _read_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path} holds a JSON {type(data).__name__}; expected an object")
        for role in ROLES:
            value = data.get(f"{role}_token")
            if isinstance(value, dict):
                value = value.get("content")
            known = isinstance(value, str) and backend.token_to_id(value) is not None
            if known and role not in roles:
                roles[role] = value
        n = data.get("model_max_length")
        if isinstance(n, int) and not isinstance(n, bool) and 0 < n < _NO_MAX_LENGTH:
            max_length = n
    return roles, max_length


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """The tokenizer of a Hugging Face-format checkpoint directory (its tokenizer.json), or of
    a tokenizer.json file given directly.

    Raises:
        FileNotFoundError: the path does not exist, or the directory has no tokenizer.json.
        ValueError: a file is not valid JSON, or not a tokenizer ``tokenizers`` can load.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    given = Path(path)
    if given.is_dir():
        folder, file = given, given / "tokenizer.json"
    elif given.is_file():
        folder, file = given.parent, given
    else:
        raise FileNotFoundError(
            f"tokenizer path {str(given)!r} does not exist; expected a checkpoint directory "
            "holding tokenizer.json, or a tokenizer.json file"
        )
    if not file.is_file():
        others = [
            n for n in ("vocab.txt", "tokenizer.model", "vocab.json") if (folder / n).exists()
        ]
        hint = (
            f" (it has {', '.join(others)}: only the tokenizers JSON format is read; write it "
            "with transformers: AutoTokenizer.from_pretrained(dir).save_pretrained(dir))"
            if others
            else ""
        )
        raise FileNotFoundError(f"no tokenizer.json in {str(folder)!r}{hint}")
    spec = _read_json(file)
    if not isinstance(spec, dict) or "model" not in spec:
        raise ValueError(f"{file} is JSON but not a tokenizer (no 'model' entry)")
    tokenizers = _import_tokenizers()
    try:
        backend = tokenizers.Tokenizer.from_str(json.dumps(spec))
    except Exception as err:  # tokenizers raises its own Rust-side exception type
        raise ValueError(
            f"{file} is not a tokenizer the tokenizers package can load: {err}"
        ) from err
    roles, max_length = _directory_special_tokens(folder, backend)
    return Tokenizer(backend, special_tokens=roles, model_max_length=max_length, name=str(folder))
