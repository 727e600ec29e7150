"""Llama-family checkpoints (Llama, SmolLM-like, Qwen2, Mistral) built offline with transformers:
multihead's logits are within 1e-4 of transformers' (fp32), greedy generation with the KV cache
equals transformers' greedy generate for 32 tokens, and to_pretrained writes directories
transformers loads with the same outputs, pruned models included."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from multihead.convert import from_pretrained, select_layer_heads, to_pretrained
from multihead.models import DecoderLM
from tests.convert.tiny_hf import DECODERS, build_decoder, hf_greedy, save, transformers

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: a second thread only contends


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """name -> (transformers model, its directory, the multihead model loaded from it)."""
    out = {}
    for name in DECODERS:
        hf = build_decoder(name)
        path = save(hf, tmp_path_factory.mktemp(name))
        out[name] = (hf, path, from_pretrained(path))
    return out


@pytest.mark.parametrize("name", list(DECODERS))
def test_logits_match_transformers(converted, name):
    hf, _, model = converted[name]
    assert isinstance(model, DecoderLM)
    tokens = torch.randint(0, 96, (2, 23))  # longer than Mistral's window of 8
    with torch.no_grad():
        want = hf(tokens).logits
        got = model(tokens)
    assert (got - want).abs().max().item() < 1e-4


@pytest.mark.parametrize("name", list(DECODERS))
def test_greedy_generation_with_the_cache_equals_transformers(converted, name):
    hf, _, model = converted[name]
    prompt = torch.randint(0, 96, (2, 5))
    assert model.generate(prompt, max_new_tokens=32) == hf_greedy(hf, prompt, 32)


def test_the_config_carries_every_option(converted):
    cfg = converted["llama-gqa-llama3-biases"][2].config
    assert (cfg.num_heads, cfg.kv_heads, cfg.rope_base, cfg.tie_embeddings) == (4, 2, 5000.0, False)
    assert cfg.rope_scaling.kind == "llama3" and cfg.rope_scaling.original_max_len == 16
    assert (cfg.has_qkv_bias, cfg.has_out_bias, cfg.has_mlp_bias) == (True, True, True)
    tied = converted["llama-mqa-tied-linear"][2]
    assert tied.config.kv_heads == 1 and tied.head.weight is tied.embed.tokens.weight
    assert tied.config.rope_scaling.kind == "linear"
    smol = converted["smollm-like-head-dim"][2].config
    assert (smol.head_size, smol.num_heads, smol.kv_heads) == (12, 8, 2)
    qwen = converted["qwen2-qkv-bias"][2].config
    assert (qwen.has_qkv_bias, qwen.has_out_bias, qwen.has_mlp_bias) == (True, False, False)
    assert converted["mistral-window"][2].config.window == 8


def test_sharded_checkpoints_load_the_same(converted, tmp_path):
    hf, _, model = converted["qwen2-qkv-bias"]
    path = save(hf, tmp_path, max_shard_size="40KB")
    assert (path / "model.safetensors.index.json").is_file()
    sharded = from_pretrained(path)
    for (k, a), (_, b) in zip(model.state_dict().items(), sharded.state_dict().items()):
        assert torch.equal(a, b), k


def test_weights_keep_the_checkpoint_dtype_unless_told(tmp_path):
    path = save(build_decoder("llama-mqa-tied-linear").to(torch.bfloat16), tmp_path)
    bf16 = from_pretrained(path)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    assert bf16.rotary.inv_freq.dtype == torch.float32  # RoPE angles stay in float32
    fp32 = from_pretrained(path, dtype="fp32")
    assert {p.dtype for p in fp32.parameters()} == {torch.float32}
    assert bf16.new_cache(1, 4).layers[0].k.dtype == torch.bfloat16


@pytest.mark.parametrize("name", ["llama-gqa-llama3-biases", "qwen2-qkv-bias", "mistral-window"])
def test_to_pretrained_round_trips_through_transformers(converted, name, tmp_path):
    hf, _, model = converted[name]
    path = to_pretrained(model, tmp_path / "out")
    back = transformers.AutoModelForCausalLM.from_pretrained(str(path)).eval()
    assert type(back) is type(hf)
    tokens = torch.randint(0, 96, (2, 19))
    with torch.no_grad():
        torch.testing.assert_close(back(tokens).logits, hf(tokens).logits, atol=1e-5, rtol=0)
    again = from_pretrained(path)
    assert again.config == model.config


def test_a_pruned_decoder_is_written_padded_and_read_back_pruned(converted, tmp_path):
    _, dir_, _ = converted["llama-gqa-llama3-biases"]
    model = from_pretrained(dir_)
    # Layer 0 keeps query heads 3 and 0 (KV heads 1 and 0: uneven order), layer 1 one head.
    select_layer_heads(model, [[3, 0], [1]])
    assert model.config.layer_head_counts == (2, 1)
    with pytest.raises(ValueError, match="one head count for all layers"):
        to_pretrained(model, tmp_path / "refused", pruned="refuse")
    path = to_pretrained(model, tmp_path / "out")
    back = transformers.AutoModelForCausalLM.from_pretrained(str(path)).eval()
    assert back.config.num_attention_heads == 4  # transformers holds the padded layout
    tokens = torch.randint(0, 96, (2, 11))
    with torch.no_grad():
        want = model(tokens)
        assert (back(tokens).logits - want).abs().max().item() < 1e-4
    again = from_pretrained(path)
    assert again.config.layer_heads == ((3, 0), (1,))
    assert [b.attn.num_heads for b in again.blocks] == [2, 1]
    with torch.no_grad():
        torch.testing.assert_close(again(tokens), want, atol=1e-5, rtol=0)


def test_older_config_keys_and_a_stored_tied_head_load_the_same(converted, tmp_path):
    """transformers 4 wrote rope_theta / rope_scaling ({"type": ...}) and torch_dtype; some
    tied checkpoints store lm_head.weight anyway (it is the embedding)."""
    hf, _, model = converted["llama-mqa-tied-linear"]
    path = save(hf, tmp_path)
    cfg = json.loads((path / "config.json").read_text())
    rope = cfg.pop("rope_parameters")
    cfg.update(rope_theta=rope["rope_theta"], rope_scaling={"type": "linear", "factor": 2.0})
    cfg["torch_dtype"] = cfg.pop("dtype")
    (path / "config.json").write_text(json.dumps(cfg))
    tensors = load_file(path / "model.safetensors")
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    old = from_pretrained(path)
    assert old.config == model.config and old.head.weight is old.embed.tokens.weight
    tokens = torch.randint(0, 96, (1, 9))
    with torch.no_grad():
        assert torch.equal(old(tokens), model(tokens))
