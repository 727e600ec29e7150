"""DecoderLM against a twin built from torch.nn.TransformerEncoderLayer, tied heads, bad
tokens, torch.compile, and pruned models (per-layer heads): equal to the head-masked full
model, saved, reloaded, generating and training like any other."""

import inspect
import json

import pytest
import torch
from torch import nn

from multihead import MultiHeadAttention
from multihead.cache import KVCache
from multihead.models import DecoderConfig, DecoderLM
from tests.models.pruning import copy_kept_heads, removed_mask


def build(**kw):
    torch.manual_seed(0)
    base = {"vocab_size": 50, "max_seq_len": 32, "d_model": 32, "num_layers": 2, "num_heads": 4}
    return DecoderLM(DecoderConfig(**{**base, **kw})).eval()


class TorchTwin(nn.Module):
    """The same architecture from torch's own layers: learned positions, pre-norm
    TransformerEncoderLayer (GELU, LayerNorm) with a causal mask, final LayerNorm, tied head."""

    def __init__(self, model: DecoderLM):
        super().__init__()
        cfg = model.config
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_seq_len, cfg.d_model)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                cfg.d_model,
                cfg.num_heads,
                cfg.ffn_size,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(cfg.num_layers)
        )
        self.norm = nn.LayerNorm(cfg.d_model)
        with torch.no_grad():
            self.tok.weight.copy_(model.embed.tokens.weight)
            self.pos.weight.copy_(model.embed.absolute.embedding.weight)
            for ours, theirs in zip(model.blocks, self.layers):
                theirs.self_attn.in_proj_weight.copy_(ours.attn.in_proj.weight)
                theirs.self_attn.in_proj_bias.copy_(ours.attn.in_proj.bias)
                theirs.self_attn.out_proj.load_state_dict(ours.attn.out_proj.state_dict())
                theirs.linear1.load_state_dict(ours.ffn.up.state_dict())
                theirs.linear2.load_state_dict(ours.ffn.down.state_dict())
                theirs.norm1.load_state_dict(ours.norm1.state_dict())
                theirs.norm2.load_state_dict(ours.norm2.state_dict())
            self.norm.load_state_dict(model.norm.state_dict())

    def forward(self, tokens):
        t = tokens.shape[1]
        x = self.tok(tokens) + self.pos(torch.arange(t))
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        for layer in self.layers:
            x = layer(x, src_mask=mask, is_causal=True)
        return self.norm(x) @ self.tok.weight.T


def test_matches_transformer_encoder_layer_twin():
    model = build(position="learned")
    twin = TorchTwin(model).eval()
    x = torch.randint(0, 50, (3, 17))
    torch.testing.assert_close(model(x), twin(x), atol=1e-5, rtol=1e-5)


def test_tied_and_untied_heads():
    tied, untied = build(), build(tie_embeddings=False)
    assert tied.head.weight is tied.embed.tokens.weight
    assert untied.head.weight is not untied.embed.tokens.weight
    assert untied.num_parameters() - tied.num_parameters() == 50 * 32


def test_forward_rejects_bad_tokens():
    model = build()
    with pytest.raises(ValueError, match=r"\(B, T\) integer token ids"):
        model(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        model.generate([[1], []], max_new_tokens=1)


def test_compile_fullgraph_forward():
    if not hasattr(torch, "compile"):
        pytest.skip("torch.compile is not available in this torch")
    model = build(position="rope", num_kv_heads=2)
    x = torch.randint(0, 50, (2, 12))
    try:
        compiled = torch.compile(model, fullgraph=True)
        out = compiled(x)
    except RuntimeError as err:  # no C++ compiler for inductor on this platform
        if "compiler" in str(err).lower() and "not found" in str(err).lower():
            pytest.skip(f"inductor cannot compile on this platform: {err}")
        raise
    torch.testing.assert_close(out, model(x), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------- pruned models
# Layer 1 keeps query heads 1 and 3 (one per KV group); layer 2 keeps KV group 1, reordered.
PRUNED = {"num_kv_heads": 2, "num_layers": 3, "layer_heads": [[0, 1, 2, 3], [1, 3], [3, 2]]}


def pruned_pair(**kw):
    full = build(**{**PRUNED, **kw, "layer_heads": None}).double()
    pruned = build(**{**PRUNED, **kw}).double()
    copy_kept_heads(full, pruned)
    return full, pruned


@pytest.mark.parametrize("kw", [{}, {"position": "learned", "window": 5}, {"bias": False}])
def test_a_pruned_model_equals_the_head_masked_full_model(kw):
    full, pruned = pruned_pair(**kw)
    assert [b.attn.num_heads for b in pruned.blocks] == [4, 2, 2]
    assert [b.attn.num_kv_heads for b in pruned.blocks] == [2, 2, 1]
    x = torch.randint(0, 50, (2, 11))
    torch.testing.assert_close(
        pruned(x), full(x, head_mask=removed_mask(pruned.config)), atol=1e-10, rtol=1e-10
    )


def test_a_pruned_model_saves_and_reloads(tmp_path):
    from multihead.checkpoint import CONFIG, save_checkpoint

    _, pruned = pruned_pair()
    pruned = pruned.float()
    cfg = pruned.config
    save_checkpoint(tmp_path, model=pruned, kind=cfg.kind, config=cfg.to_dict())
    saved = json.loads((tmp_path / "step-00000000" / CONFIG).read_text())["config"]
    assert saved["layer_heads"] == [[0, 1, 2, 3], [1, 3], [3, 2]]  # readable JSON
    back = DecoderLM.from_checkpoint(tmp_path)
    assert back.config == cfg
    x = torch.randint(0, 50, (2, 9))
    torch.testing.assert_close(back(x), pruned(x))


def _per_layer_cache() -> bool:
    try:
        KVCache(num_layers=2, batch_size=1, max_len=2, num_kv_heads=[1, 2], head_dim=2)
    except ValueError:
        return False
    return True


@pytest.mark.skipif(not _per_layer_cache(), reason="needs per-layer KVCache counts (attn branch)")
def test_a_pruned_model_generates_the_same_with_its_per_layer_cache():
    _, pruned = pruned_pair()  # KV heads per layer: 2, 2, 1
    prompts = [[1, 2, 3, 4], [5, 6]]
    assert [layer.k.shape[1] for layer in pruned.new_cache(2, 10).layers] == [2, 2, 1]
    assert pruned.generate(prompts, max_new_tokens=6) == pruned.generate(
        prompts, max_new_tokens=6, use_cache=False
    )


def test_training_runs_and_resumes_from_a_pruned_config(tmp_path):
    from multihead.train import TrainConfig, train

    cfg = DecoderConfig(
        vocab_size=16,
        max_seq_len=16,
        d_model=32,
        num_layers=2,
        num_heads=4,
        layer_heads=[[0, 2], [1, 2, 3]],
    )
    run = TrainConfig(
        task="copy",
        steps=4,
        batch_size=4,
        seq_len=15,
        warmup_steps=1,
        eval_every=2,
        eval_tokens=256,
        log_every=1,
        save_every=2,
        optimizer="muon",
    )
    full = train(cfg, run, out=tmp_path / "a", progress=False)
    resumed = train(
        cfg, run, out=tmp_path / "b", resume=tmp_path / "a" / "step-00000002", progress=False
    )
    assert resumed["losses"] == full["losses"][2:]  # bit for bit
    assert DecoderLM.from_checkpoint(tmp_path / "a").config.layer_heads == ((0, 2), (1, 2, 3))


UNEVEN = "kv_index" in inspect.signature(MultiHeadAttention).parameters


@pytest.mark.skipif(not UNEVEN, reason="needs MultiHeadAttention(kv_index=...) (attn branch)")
def test_uneven_groups_after_pruning_equal_the_head_masked_full_model():
    # Layer 0: KV head 0 serves query heads 0 and 1, KV head 1 only query head 3; layer 1
    # keeps its heads in another order than their groups.
    full, pruned = pruned_pair(layer_heads=[[0, 1, 3], [3, 0], [2]])
    assert pruned.config.heads_of(0).kv_index == (0, 0, 1)
    x = torch.randint(0, 50, (2, 11))
    torch.testing.assert_close(
        pruned(x), full(x, head_mask=removed_mask(pruned.config)), atol=1e-10, rtol=1e-10
    )
    prompts = [[1, 2, 3], [4]]
    assert pruned.generate(prompts, max_new_tokens=5) == pruned.generate(
        prompts, max_new_tokens=5, use_cache=False
    )


def test_each_layer_owns_the_alibi_slopes_of_its_heads():
    from multihead.positional import alibi_slopes

    full, pruned = pruned_pair(position="alibi", window=6)
    slopes = alibi_slopes(4)
    for block, heads in zip(pruned.blocks, pruned.config.layer_heads):
        torch.testing.assert_close(block.attn.position_bias.slopes.float(), slopes[list(heads)])
    assert not pruned.mask.has_bias  # the attention adds its own bias, not the model's mask
    x = torch.randint(0, 50, (2, 11))
    torch.testing.assert_close(
        pruned(x), full(x, head_mask=removed_mask(pruned.config)), atol=1e-10, rtol=1e-10
    )
    prompts = [[1, 2, 3, 4, 5, 6, 7, 8], [9]]  # longer than the window: a ring cache
    assert pruned.generate(prompts, max_new_tokens=6) == pruned.generate(
        prompts, max_new_tokens=6, use_cache=False
    )
    # Slopes follow from the config, so checkpoints hold the tensors they always held.
    assert not [k for k in pruned.state_dict() if "slopes" in k]


def test_per_layer_alibi_computes_what_one_shared_alibi_in_the_mask_did():
    from multihead import masks
    from multihead.positional import ALiBi

    model = build(position="alibi", window=5)
    x = torch.randint(0, 50, (2, 9))
    expected = model(x)
    shared = masks.causal() & masks.sliding_window(5) & masks.bias(ALiBi(4))  # the old mask
    for block in model.blocks:
        block.attn.position_bias = None
    h = model.embed(x, torch.arange(9))
    for block in model.blocks:
        h, _ = block(h, mask=shared, positions=torch.arange(9))
    torch.testing.assert_close(model.head(model.norm(h)), expected)
