"""BERT-family encoders (``model_type: bert``) as multihead :class:`~multihead.models.Encoder`.

transformers' ``BertModel`` is, layer by layer: embeddings ``LayerNorm(word + token_type +
position)`` (learned absolute positions), then per layer ``h = LayerNorm(x + dense(attn(x)))``
and ``LayerNorm(h + dense(gelu(dense(h))))`` with the exact (erf) GELU — post-norm blocks, all
LayerNorms with ``layer_norm_eps`` and biases everywhere — and the pooler ``tanh(dense(h_0))``
on the first token. In multihead terms: ``position="learned"``, ``type_vocab_size``,
``embedding_norm=True``, ``norm_placement="post"``, ``activation="gelu"`` and
``pooling="pooler"`` (``"first"`` for a checkpoint saved without a pooler).
"""

from __future__ import annotations

from typing import Any

from multihead.convert.family import Family, hf_value, unsupported_value
from multihead.models import Encoder, EncoderConfig, TransformerConfig

_LAYER = "{base}encoder.layer.{i}."
KEYS = {
    "embed.tokens.weight": "{base}embeddings.word_embeddings.weight",
    "embed.types.weight": "{base}embeddings.token_type_embeddings.weight",
    "embed.absolute.embedding.weight": "{base}embeddings.position_embeddings.weight",
    "embed.norm.weight": "{base}embeddings.LayerNorm.weight",
    "embed.norm.bias": "{base}embeddings.LayerNorm.bias",
    "blocks.{i}.attn.in_proj.weight": tuple(
        _LAYER + f"attention.self.{p}.weight" for p in ("query", "key", "value")
    ),
    "blocks.{i}.attn.in_proj.bias": tuple(
        _LAYER + f"attention.self.{p}.bias" for p in ("query", "key", "value")
    ),
    "blocks.{i}.attn.out_proj.weight": _LAYER + "attention.output.dense.weight",
    "blocks.{i}.attn.out_proj.bias": _LAYER + "attention.output.dense.bias",
    "blocks.{i}.norm1.weight": _LAYER + "attention.output.LayerNorm.weight",
    "blocks.{i}.norm1.bias": _LAYER + "attention.output.LayerNorm.bias",
    "blocks.{i}.ffn.up.weight": _LAYER + "intermediate.dense.weight",
    "blocks.{i}.ffn.up.bias": _LAYER + "intermediate.dense.bias",
    "blocks.{i}.ffn.down.weight": _LAYER + "output.dense.weight",
    "blocks.{i}.ffn.down.bias": _LAYER + "output.dense.bias",
    "blocks.{i}.norm2.weight": _LAYER + "output.LayerNorm.weight",
    "blocks.{i}.norm2.bias": _LAYER + "output.LayerNorm.bias",
    "pooler.weight": "{base}pooler.dense.weight",
    "pooler.bias": "{base}pooler.dense.bias",
}
IGNORED = ("{base}embeddings.position_ids", "{base}embeddings.token_type_ids")
# BertConfig's defaults, for keys a config.json leaves out.
_DEFAULTS = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "position_embedding_type": "absolute",
}


def to_config(hf: dict[str, Any], stored: frozenset[str]) -> EncoderConfig:
    """The multihead config of a BERT ``config.json``; ``stored`` (the checkpoint's names
    without the base prefix) says whether it has a pooler."""
    get = {k: hf_value(hf, k, v) for k, v in _DEFAULTS.items()}
    if get["hidden_act"] != "gelu":
        raise unsupported_value(hf, "hidden_act", get["hidden_act"], "'gelu', the exact GELU")
    if get["position_embedding_type"] != "absolute":
        raise unsupported_value(
            hf, "position_embedding_type", get["position_embedding_type"], "'absolute'"
        )
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise ValueError(
            "config.json describes a BERT decoder (is_decoder/add_cross_attention); multihead "
            "converts BERT encoders only"
        )
    return EncoderConfig(
        vocab_size=get["vocab_size"],
        max_seq_len=get["max_position_embeddings"],
        d_model=get["hidden_size"],
        num_layers=get["num_hidden_layers"],
        num_heads=get["num_attention_heads"],
        ffn_dim=get["intermediate_size"],
        activation="gelu",
        norm="layernorm",
        norm_eps=float(get["layer_norm_eps"]),
        bias=True,
        position="learned",
        norm_placement="post",
        embedding_norm=True,
        type_vocab_size=get["type_vocab_size"],
        dropout=float(get["hidden_dropout_prob"]),
        attn_dropout=float(get["attention_probs_dropout_prob"]),
        pooling="pooler" if "pooler.dense.weight" in stored else "first",
    )


def unsupported(cfg: TransformerConfig) -> list[str]:
    """Why ``cfg`` is not a BERT encoder transformers' BertModel can hold (empty: it is)."""
    wanted = {
        "position": "learned",
        "norm": "layernorm",
        "activation": "gelu",
        "norm_placement": "post",
        "embedding_norm": True,
        "window": None,
        "has_qkv_bias": True,
        "has_out_bias": True,
        "has_mlp_bias": True,
    }
    out = [
        f"{name}={getattr(cfg, name)!r} (BERT has {value!r})"
        for name, value in wanted.items()
        if getattr(cfg, name) != value
    ]
    if cfg.attention_only:
        out.append("ffn_dim=0 (attention-only blocks; BERT has a feed-forward in every block)")
    if not isinstance(cfg, EncoderConfig):
        out.insert(0, f"a {type(cfg).__name__} (BERT is an EncoderConfig's Encoder)")
    if cfg.type_vocab_size < 1:
        out.append("type_vocab_size=0 (BertModel always has token types)")
    if cfg.head_size * cfg.num_heads != cfg.d_model:
        out.append(f"head_dim={cfg.head_size} with num_heads * head_dim != d_model={cfg.d_model}")
    if cfg.kv_heads != cfg.num_heads:
        out.append(f"num_kv_heads={cfg.kv_heads} (BERT has one KV head per query head)")
    return out


def to_hf(cfg: TransformerConfig, original: dict[str, Any] | None) -> dict[str, Any]:
    """A BertModel ``config.json``: the keys of ``original`` (the checkpoint's own, if the
    model came from one) updated with the shape and options of ``cfg``."""
    hf = dict(original or {})
    hf.pop("_name_or_path", None)
    hf.update(
        {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.d_model,
            "num_hidden_layers": cfg.num_layers,
            "num_attention_heads": cfg.num_heads,
            "intermediate_size": cfg.ffn_size,
            "hidden_act": "gelu",
            "hidden_dropout_prob": cfg.dropout,
            "attention_probs_dropout_prob": cfg.attn_dropout,
            "max_position_embeddings": cfg.max_seq_len,
            "type_vocab_size": cfg.type_vocab_size,
            "layer_norm_eps": cfg.norm_eps,
            "position_embedding_type": "absolute",
        }
    )
    hf.setdefault("pad_token_id", 0)
    return hf


BERT = Family(
    name="bert",
    model_types=("bert",),
    model_class=Encoder,
    base_prefixes=("", "bert."),
    keys=KEYS,
    ignored=IGNORED,
    to_config=to_config,
    to_hf=to_hf,
    unsupported=unsupported,
)
