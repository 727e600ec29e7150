"""Tiny random transformers models, built offline and saved with save_pretrained, for the
conversion tests (transformers is a test-only dependency: the `hf` extra)."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

COMMON = {
    "vocab_size": 96,
    "hidden_size": 64,
    "intermediate_size": 80,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    # Larger than the default 0.02, so logits are well apart and greedy choices are not
    # decided by float rounding.
    "initializer_range": 0.2,
}
LLAMA3 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}
# name -> (model class name, config class name, config overrides)
DECODERS = {
    "llama-gqa-llama3-biases": (
        "LlamaForCausalLM",
        "LlamaConfig",
        {"rope_theta": 5000.0, "rope_scaling": LLAMA3, "attention_bias": True, "mlp_bias": True},
    ),
    "llama-mqa-tied-linear": (
        "LlamaForCausalLM",
        "LlamaConfig",
        {
            "num_key_value_heads": 1,
            "tie_word_embeddings": True,
            "rope_scaling": {"rope_type": "linear", "factor": 2.0},
        },
    ),
    "smollm-like-head-dim": (  # SmolLM is the Llama architecture: tied, GQA; head_dim set
        "LlamaForCausalLM",
        "LlamaConfig",
        {
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
            "head_dim": 12,
            "tie_word_embeddings": True,
            "rope_theta": 100000.0,
        },
    ),
    "qwen2-qkv-bias": ("Qwen2ForCausalLM", "Qwen2Config", {"rope_theta": 1e6}),
    "mistral-window": ("MistralForCausalLM", "MistralConfig", {"sliding_window": 8}),
}


def build_decoder(name: str, seed: int = 0):
    model_cls, config_cls, extra = DECODERS[name]
    torch.manual_seed(seed)
    config = getattr(transformers, config_cls)(**{**COMMON, **extra})
    return getattr(transformers, model_cls)(config).eval()


def save(model, path, **kwargs):
    model.save_pretrained(str(path), **kwargs)
    return path


def tiny_bert(seed: int = 0, cls="BertModel", **extra):
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=80,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=40,
        type_vocab_size=2,
        layer_norm_eps=1e-7,
        **extra,
    )
    return getattr(transformers, cls)(config).eval()


def hf_greedy(model, prompt: torch.Tensor, n: int) -> list[list[int]]:
    """transformers' greedy continuation of n tokens (no stop token may end it early)."""
    out = model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=n,
        min_new_tokens=n,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
    )
    return out[:, prompt.shape[1] :].tolist()
