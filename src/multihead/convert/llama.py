"""Llama-family decoders (``model_type``: ``llama`` — SmolLM included —, ``mistral``,
``qwen2``) as multihead :class:`~multihead.models.DecoderLM`.

transformers' layout, layer by layer: ``x + o_proj(attn(RMSNorm(x)))`` then
``x + down_proj(silu(gate_proj(h)) * up_proj(h))`` with ``h = RMSNorm(x)`` (pre-norm,
``rms_norm_eps``), a final RMSNorm and ``lm_head`` (tied to the embedding when
``tie_word_embeddings``). Queries and keys are rotated by RoPE with the half-split pairing:
transformers' ``rotate_half`` pairs channel ``j`` with ``j + D/2`` of each head (its conversion
script permutes Meta's interleaved q/k rows into that order), which is
:class:`~multihead.positional.RotaryEmbedding`'s default ``interleaved=False``. Grouped-query
attention has ``num_key_value_heads`` KV heads; ``head_dim`` may be set apart from
``hidden_size / num_attention_heads``.

Biases: Llama's ``attention_bias`` puts biases on q, k, v and o; ``mlp_bias`` on the MLP;
Qwen2 has q/k/v biases and none on o; Mistral none. Sliding windows: Mistral's
``sliding_window`` (every layer), Qwen2's when ``use_sliding_window`` and all layers are
windowed (multihead models have one window for all layers).
"""

from __future__ import annotations

from typing import Any

from multihead.convert.family import Family, hf_value, unsupported_value
from multihead.models import DecoderConfig, DecoderLM, TransformerConfig
from multihead.positional import RopeScaling

_LAYER = "{base}layers.{i}."
KEYS = {
    "embed.tokens.weight": "{base}embed_tokens.weight",
    "blocks.{i}.norm1.weight": _LAYER + "input_layernorm.weight",
    "blocks.{i}.attn.in_proj.weight": tuple(
        _LAYER + f"self_attn.{p}_proj.weight" for p in ("q", "k", "v")
    ),
    "blocks.{i}.attn.in_proj.bias": tuple(_LAYER + f"self_attn.{p}_proj.bias" for p in "qkv"),
    "blocks.{i}.attn.out_proj.weight": _LAYER + "self_attn.o_proj.weight",
    "blocks.{i}.attn.out_proj.bias": _LAYER + "self_attn.o_proj.bias",
    "blocks.{i}.norm2.weight": _LAYER + "post_attention_layernorm.weight",
    "blocks.{i}.ffn.up.weight": (_LAYER + "mlp.gate_proj.weight", _LAYER + "mlp.up_proj.weight"),
    "blocks.{i}.ffn.up.bias": (_LAYER + "mlp.gate_proj.bias", _LAYER + "mlp.up_proj.bias"),
    "blocks.{i}.ffn.down.weight": _LAYER + "mlp.down_proj.weight",
    "blocks.{i}.ffn.down.bias": _LAYER + "mlp.down_proj.bias",
    "norm.weight": "{base}norm.weight",
    "head.weight": "lm_head.weight",
}
IGNORED = (_LAYER + "self_attn.rotary_emb.inv_freq",)
ROPE_TYPES = ("default", "linear", "llama3")
ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
}
# Each model type's config defaults (LlamaConfig, MistralConfig, Qwen2Config), for keys a
# config.json leaves out.
_DEFAULTS = {
    "llama": {"max_position_embeddings": 2048, "tie_word_embeddings": False},
    "mistral": {"max_position_embeddings": 4096 * 32, "tie_word_embeddings": False},
    "qwen2": {"max_position_embeddings": 32768, "tie_word_embeddings": False},
}


def _rope(hf: dict[str, Any]) -> tuple[float, RopeScaling | None]:
    """rope_theta and the scaling, from transformers 5's ``rope_parameters`` or the older
    ``rope_theta`` / ``rope_scaling`` keys."""
    params = dict(hf.get("rope_scaling") or hf.get("rope_parameters") or {})
    theta = float(params.get("rope_theta", hf_value(hf, "rope_theta", 10000.0)))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ROPE_TYPES:
        raise unsupported_value(hf, "rope type", kind, ", ".join(map(repr, ROPE_TYPES)))
    partial = params.get("partial_rotary_factor", hf.get("partial_rotary_factor"))
    if partial not in (None, 1, 1.0):
        raise unsupported_value(hf, "partial_rotary_factor", partial, "1.0")
    if kind == "default":
        return theta, None
    if kind == "linear":
        return theta, RopeScaling("linear", float(params["factor"]))
    return theta, RopeScaling(
        "llama3",
        float(params["factor"]),
        low_freq_factor=float(params["low_freq_factor"]),
        high_freq_factor=float(params["high_freq_factor"]),
        original_max_len=int(
            params.get("original_max_position_embeddings", hf["max_position_embeddings"])
        ),
    )


def _window(hf: dict[str, Any], model_type: str, layers: int) -> int | None:
    """The attention window; ``hf`` as read, so an explicit null (no window) is kept apart
    from an absent key (the config class's default)."""
    if model_type == "mistral":
        return hf.get("sliding_window", 4096)
    if model_type != "qwen2" or not hf.get("use_sliding_window"):
        return None
    types = hf.get("layer_types") or [
        "sliding_attention" if i >= hf_value(hf, "max_window_layers", 28) else "full_attention"
        for i in range(layers)
    ]
    if all(t == "full_attention" for t in types):
        return None
    if all(t == "sliding_attention" for t in types):
        return hf_value(hf, "sliding_window", 4096)
    raise ValueError(
        f"config.json windows some layers and not others (layer_types={types}); multihead "
        "models have one attention window for all layers"
    )


def _biases(hf: dict[str, Any], model_type: str) -> tuple[bool, bool, bool]:
    """(qkv, out, mlp) biases."""
    if model_type == "qwen2":
        return True, False, False
    if model_type == "mistral":
        return False, False, False
    attention = bool(hf.get("attention_bias", False))
    return attention, attention, bool(hf.get("mlp_bias", False))


def to_config(hf: dict[str, Any], stored: frozenset[str]) -> DecoderConfig:
    """The multihead config of a Llama/Mistral/Qwen2 ``config.json``."""
    del stored  # the config alone says everything (a tied head has no stored weight)
    model_type = hf["model_type"]
    act = hf_value(hf, "hidden_act", "silu")
    if act != "silu":
        raise unsupported_value(hf, "hidden_act", act, "'silu' (SwiGLU)")
    window = _window(hf, model_type, hf["num_hidden_layers"])
    hf = {**_DEFAULTS[model_type], **{k: v for k, v in hf.items() if v is not None}}
    d_model, heads = hf["hidden_size"], hf["num_attention_heads"]
    layers = hf["num_hidden_layers"]
    theta, scaling = _rope(hf)
    qkv_bias, out_bias, mlp_bias = _biases(hf, model_type)
    return DecoderConfig(
        vocab_size=hf["vocab_size"],
        max_seq_len=hf["max_position_embeddings"],
        d_model=d_model,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads", heads),
        head_dim=hf.get("head_dim"),  # None: hidden_size / num_attention_heads, checked
        ffn_dim=hf["intermediate_size"],
        activation="swiglu",
        norm="rmsnorm",
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        bias=False,
        qkv_bias=qkv_bias,
        out_bias=out_bias,
        mlp_bias=mlp_bias,
        position="rope",
        rope_base=theta,
        rope_scaling=scaling,
        window=window,
        attn_dropout=float(hf.get("attention_dropout", 0.0)),
        tie_embeddings=bool(hf["tie_word_embeddings"]),
    )


def _model_types(cfg: TransformerConfig) -> list[str]:
    """The model types that can hold ``cfg``'s biases and window, best first."""
    biases = (cfg.has_qkv_bias, cfg.has_out_bias, cfg.has_mlp_bias)
    out = []
    if cfg.window is None and biases[0] == biases[1]:
        out.append("llama")
    if biases == (False, False, False):
        out.append("mistral")
    if biases == (True, False, False):
        out.append("qwen2")
    return out


def unsupported(cfg: TransformerConfig) -> list[str]:
    """Why ``cfg`` is not a decoder transformers' Llama/Mistral/Qwen2 can hold (empty: it is)."""
    wanted = {
        "position": "rope",
        "rope_interleaved": False,
        "rope_fraction": 1.0,
        "norm": "rmsnorm",
        "activation": "swiglu",
        "norm_placement": "pre",
        "embedding_norm": False,
        "type_vocab_size": 0,
    }
    out = [
        f"{name}={getattr(cfg, name)!r} (the Llama family has {value!r})"
        for name, value in wanted.items()
        if getattr(cfg, name) != value
    ]
    if cfg.attention_only:
        out.append(
            "ffn_dim=0 (attention-only blocks; the Llama family has a feed-forward in every block)"
        )
    if not isinstance(cfg, DecoderConfig):
        out.insert(0, f"a {type(cfg).__name__} (the Llama family is a DecoderConfig's DecoderLM)")
    if not _model_types(cfg):
        out.append(
            f"biases qkv={cfg.has_qkv_bias}, out={cfg.has_out_bias}, mlp={cfg.has_mlp_bias} "
            f"with window={cfg.window} (Llama: qkv and out alike, no window; Mistral: no "
            "biases; Qwen2: qkv biases only)"
        )
    return out


def to_hf(cfg: TransformerConfig, original: dict[str, Any] | None) -> dict[str, Any]:
    """A ``config.json`` of the model type the model came from when it can still hold the
    model, else the first of Llama, Mistral, Qwen2 that can."""
    hf = dict(original or {})
    for stale in ("_name_or_path", "rope_scaling", "rope_theta", "layer_types"):
        hf.pop(stale, None)
    types = _model_types(cfg)
    model_type = hf.get("model_type") if hf.get("model_type") in types else types[0]
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": cfg.rope_base}
    if cfg.rope_scaling is not None:
        s = cfg.rope_scaling
        rope.update({"rope_type": s.kind, "factor": s.factor})
        if s.kind == "llama3":
            rope.update(
                low_freq_factor=s.low_freq_factor,
                high_freq_factor=s.high_freq_factor,
                original_max_position_embeddings=s.original_max_len,
            )
    hf.update(
        {
            "architectures": [ARCHITECTURES[model_type]],
            "model_type": model_type,
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.d_model,
            "intermediate_size": cfg.ffn_size,
            "num_hidden_layers": cfg.num_layers,
            "num_attention_heads": cfg.num_heads,
            "num_key_value_heads": cfg.kv_heads,
            "hidden_act": "silu",
            "max_position_embeddings": cfg.max_seq_len,
            "rms_norm_eps": cfg.norm_eps,
            "rope_parameters": rope,
            "attention_dropout": cfg.attn_dropout,
            "tie_word_embeddings": cfg.tie_embeddings,  # type: ignore[attr-defined]
        }
    )
    hf.pop("head_dim", None)
    if cfg.head_dim is not None:  # else hidden_size / num_attention_heads, as transformers has it
        hf["head_dim"] = cfg.head_dim
    if model_type == "llama":
        hf.update(attention_bias=cfg.has_qkv_bias, mlp_bias=cfg.has_mlp_bias)
    elif model_type == "mistral":
        hf["sliding_window"] = cfg.window
    else:
        windowed = cfg.window is not None
        hf.update(use_sliding_window=windowed, max_window_layers=0)
        hf["sliding_window"] = cfg.window if windowed else hf.get("sliding_window")
    return hf


LLAMA = Family(
    name="llama",
    model_types=("llama", "mistral", "qwen2"),
    model_class=DecoderLM,
    base_prefixes=("model.", ""),
    keys=KEYS,
    ignored=IGNORED,
    to_config=to_config,
    to_hf=to_hf,
    unsupported=unsupported,
    tied_head="lm_head.weight",
)
