"""Bad input to from_pretrained / to_pretrained / load_model: one clear error each, naming the
file, key, shapes or options involved; pickles are refused without being opened."""

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from multihead.convert import from_pretrained, load_model, to_pretrained
from multihead.convert.packaged import file_sha256
from multihead.models import DecoderConfig, DecoderLM, Encoder, EncoderConfig
from tests.convert.tiny_hf import build_decoder, save


@pytest.fixture
def llama_dir(tmp_path):
    return save(build_decoder("llama-mqa-tied-linear"), tmp_path / "llama")


def edit_weights(path, change):
    tensors = load_file(path / "model.safetensors")
    change(tensors)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})


def edit_config(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))


class _RunsCode:
    """Unpickling this writes a marker file: a pickle can run any code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_missing_directory_config_and_weights(tmp_path, llama_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        from_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no config.json in"):
        from_pretrained(tmp_path)
    (llama_dir / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors or model.safetensors.index"):
        from_pretrained(llama_dir)


def test_a_pickle_only_checkpoint_is_refused_unopened(llama_dir, tmp_path):
    (llama_dir / "model.safetensors").unlink()
    marker = tmp_path / "code-ran"
    (llama_dir / "pytorch_model.bin").write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(ValueError, match=r"only pickled weights \(pytorch_model.bin\).*not opened"):
        from_pretrained(llama_dir)
    assert not marker.exists()


def test_a_pickle_named_model_safetensors_is_not_unpickled(llama_dir, tmp_path):
    marker = tmp_path / "code-ran"
    (llama_dir / "model.safetensors").write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(ValueError, match="holds a pickle.*not safetensors"):
        from_pretrained(llama_dir)
    assert not marker.exists()


def test_a_truncated_weights_file(llama_dir):
    data = (llama_dir / "model.safetensors").read_bytes()
    (llama_dir / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        from_pretrained(llama_dir)


def test_an_unknown_architecture_names_the_supported_ones(llama_dir):
    edit_config(llama_dir, model_type="gpt2", architectures=["GPT2LMHeadModel"])
    with pytest.raises(
        ValueError, match=r"model_type='gpt2'.*\['bert', 'llama', 'mistral', 'qwen2'\]"
    ):
        from_pretrained(llama_dir)


def test_a_weight_whose_shape_does_not_match_names_the_key_and_both_shapes(llama_dir):
    key = "model.layers.0.self_attn.k_proj.weight"
    edit_weights(llama_dir, lambda t: t.update({key: torch.zeros(32, 64)}))
    with pytest.raises(
        ValueError, match=rf"'{key}' has shape \(32, 64\) but config.json implies \(16, 64\)"
    ):
        from_pretrained(llama_dir)


def test_missing_and_unexpected_keys_are_named(llama_dir):
    gone, extra = "model.layers.1.mlp.down_proj.weight", "model.layers.0.self_attn.extra.weight"
    edit_weights(llama_dir, lambda t: (t.pop(gone), t.update({extra: torch.zeros(2)})))
    with pytest.raises(ValueError) as err:
        from_pretrained(llama_dir)
    assert f"missing tensors ['{gone}']" in str(err.value)
    assert f"unexpected tensors ['{extra}']" in str(err.value)


def test_a_missing_shard(llama_dir):
    index = {"metadata": {}, "weight_map": {"model.embed_tokens.weight": "model-00002.safetensors"}}
    (llama_dir / "model.safetensors").unlink()
    (llama_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(FileNotFoundError, match=r"names shards \['model-00002.safetensors'\]"):
        from_pretrained(llama_dir)


@pytest.mark.parametrize("dtype", [torch.float64, torch.int8, "half-ish"])
def test_unsupported_dtypes(llama_dir, dtype):
    with pytest.raises(ValueError, match="dtype must be None"):
        from_pretrained(llama_dir, dtype=dtype)


def test_a_float64_checkpoint_asks_for_a_dtype(llama_dir):
    edit_weights(llama_dir, lambda t: t.update({k: v.double() for k, v in t.items()}))
    with pytest.raises(ValueError, match=r"stores \['torch.float64'\] weights.*pass dtype="):
        from_pretrained(llama_dir)
    assert next(from_pretrained(llama_dir, dtype="bf16").parameters()).dtype == torch.bfloat16


def test_a_sha256_mismatch(llama_dir):
    good = file_sha256(llama_dir / "model.safetensors")
    assert from_pretrained(llama_dir, verify=good) is not None
    with pytest.raises(ValueError, match=f"has sha256 {good} but {'0' * 64} was expected"):
        from_pretrained(llama_dir, verify="0" * 64)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}},
            "rope type='yarn'.*'linear', 'llama3'",
        ),
        ({"hidden_act": "gelu"}, r"hidden_act='gelu'.*'silu'"),
        ({"num_attention_heads": 5, "head_dim": None}, "num_heads=5 does not divide d_model=64"),
        ({"hidden_size": None, "head_dim": None}, "has no 'hidden_size' entry"),
    ],
)
def test_config_options_multihead_does_not_convert(llama_dir, changes, message):
    cfg = json.loads((llama_dir / "config.json").read_text())
    cfg.update(changes)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    (llama_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=message):
        from_pretrained(llama_dir)


def test_qwen2_with_windows_on_some_layers_only(tmp_path):
    path = save(build_decoder("qwen2-qkv-bias"), tmp_path)
    edit_config(
        path,
        use_sliding_window=True,
        sliding_window=8,
        layer_types=["full_attention", "sliding_attention"],
    )
    with pytest.raises(ValueError, match="one attention window for all layers"):
        from_pretrained(path)
    edit_config(path, layer_types=["sliding_attention"] * 2)
    assert from_pretrained(path).config.window == 8


def test_a_missing_tokenizer_where_one_is_needed(llama_dir):
    model, tokenizer = load_model(llama_dir)
    assert tokenizer is None and isinstance(model, DecoderLM)
    with pytest.raises(FileNotFoundError, match="has no tokenizer.json"):
        load_model(llama_dir, require_tokenizer=True)


def test_models_transformers_cannot_represent(tmp_path):
    alibi = DecoderLM(
        DecoderConfig(
            vocab_size=32,
            d_model=16,
            num_layers=1,
            num_heads=2,
            position="alibi",
            activation="swiglu",
            norm="rmsnorm",
        )
    )
    with pytest.raises(
        ValueError, match=r"as llama: position='alibi' \(the Llama family has 'rope'\)"
    ):
        to_pretrained(alibi, tmp_path)
    plain = Encoder(EncoderConfig(vocab_size=32, d_model=16, num_layers=1, num_heads=2))
    with pytest.raises(ValueError, match=r"as bert: position='rope'.*norm_placement='pre'"):
        to_pretrained(plain, tmp_path)
    with pytest.raises(TypeError, match="must be a multihead Encoder or DecoderLM"):
        to_pretrained(torch.nn.Linear(2, 2), tmp_path)


def test_heads_selected_behind_the_configs_back_are_refused(llama_dir, tmp_path):
    model = from_pretrained(llama_dir)
    model.blocks[0].attn.select_heads([0, 1])
    with pytest.raises(ValueError, match="layer 0 holds 2 query and 1 KV heads but its config"):
        to_pretrained(model, tmp_path)


def test_attention_only_models_have_no_transformers_architecture(tmp_path):
    llama_like = DecoderConfig(
        vocab_size=20,
        d_model=32,
        num_heads=4,
        ffn_dim=0,
        norm="rmsnorm",
        activation="swiglu",
        bias=False,
    )
    bert_like = EncoderConfig(
        vocab_size=20,
        d_model=32,
        num_heads=4,
        ffn_dim=0,
        position="learned",
        norm_placement="post",
        embedding_norm=True,
        type_vocab_size=2,
    )
    for model in (DecoderLM(llama_like), Encoder(bert_like)):
        with pytest.raises(ValueError, match=r"ffn_dim=0 \(attention-only blocks"):
            to_pretrained(model, tmp_path / "out")
