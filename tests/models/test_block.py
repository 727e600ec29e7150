"""TransformerBlock: returns the attention weights on request, passes its head mask to the
attention, and builds each layer's attention with the heads the config keeps there."""

import copy

import torch

from multihead import masks
from multihead.models import DecoderConfig, TransformerBlock

CFG = DecoderConfig(d_model=32, num_heads=4, position="none")


def block(cfg=CFG, layer=0):
    torch.manual_seed(0)
    return TransformerBlock(cfg, layer=layer).eval()


def test_weights_only_when_asked_and_they_are_the_attention_weights():
    b, x = block(), torch.randn(2, 7, 32)
    out, none = b(x, mask=masks.causal())
    out2, w = b(x, mask=masks.causal(), need_weights=True)
    assert none is None and w.shape == (2, 4, 7, 7)
    torch.testing.assert_close(out, out2)
    _, expected = b.attn(b.norm1(x), is_causal=True, need_weights=True)
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 7))
    assert not w.triu(1).any()  # causal: True = may attend only at or before the query


def test_a_masked_head_is_that_heads_out_proj_columns_zeroed():
    b, x = block(), torch.randn(2, 5, 32)
    d = CFG.head_size
    zeroed = copy.deepcopy(b)
    with torch.no_grad():
        zeroed.attn.out_proj.weight[:, 2 * d : 3 * d] = 0  # head 2's input columns
    keep = torch.tensor([1.0, 1.0, 0.0, 1.0])
    got, _ = b(x, mask=masks.causal(), head_mask=keep)
    want, _ = zeroed(x, mask=masks.causal())
    torch.testing.assert_close(got, want)


def test_each_layer_gets_its_own_heads():
    cfg = DecoderConfig(
        d_model=32, num_layers=2, num_heads=4, num_kv_heads=2, layer_heads=[[0, 1, 2, 3], [2, 3]]
    )
    full, pruned = block(cfg, 0), block(cfg, 1)
    assert (full.attn.num_heads, full.attn.num_kv_heads) == (4, 2)
    assert (pruned.attn.num_heads, pruned.attn.num_kv_heads) == (2, 1)
    assert pruned.attn.head_dim == cfg.head_size == 8  # pruning never changes head_dim
    assert pruned.attn.in_proj.weight.shape == (2 * 8 + 2 * 8, 32)


def test_post_norm_block_is_norm_after_each_residual_sum():
    cfg = DecoderConfig(d_model=32, num_heads=4, position="none", norm_placement="post")
    b, x = block(cfg), torch.randn(2, 6, 32)
    got, _ = b(x, mask=masks.causal())
    a, _ = b.attn(x, is_causal=True)  # post-norm: attention reads the raw residual stream
    h = b.norm1(x + a)
    want = b.norm2(h + b.ffn.down(torch.nn.functional.gelu(b.ffn.up(h))))
    torch.testing.assert_close(got, want)


def test_separate_attention_and_feed_forward_biases():
    cfg = DecoderConfig(
        d_model=32, num_heads=4, position="none", bias=False, qkv_bias=True, mlp_bias=True
    )
    b = block(cfg)
    assert b.attn.in_proj.bias is not None and b.attn.out_proj.bias is None
    assert b.ffn.up.bias is not None and b.ffn.down.bias is not None
    assert b.norm1.bias is None  # LayerNorm's shift follows `bias`
    b = block(DecoderConfig(d_model=32, num_heads=4, position="none", out_bias=False))
    assert b.attn.in_proj.bias is not None and b.attn.out_proj.bias is None
    assert b.ffn.up.bias is not None


# ---------------------------------------------------------------------- attention-only
ATTN_ONLY = dict(vocab_size=20, max_seq_len=16, d_model=32, num_layers=2, num_heads=4, ffn_dim=0)


def test_attention_only_block_is_the_residual_attention_alone():
    for placement in ("pre", "post"):
        cfg = DecoderConfig(**ATTN_ONLY, position="none", norm_placement=placement)
        b, x = block(cfg), torch.randn(2, 6, 32)
        assert b.ffn is None and b.norm2 is None
        assert not any("ffn" in n or "norm2" in n for n, _ in b.named_parameters())
        got, _ = b(x, mask=masks.causal())
        if placement == "pre":
            a, _ = b.attn(b.norm1(x), is_causal=True)
            want = x + a
        else:
            a, _ = b.attn(x, is_causal=True)
            want = b.norm1(x + a)
        torch.testing.assert_close(got, want)


def test_attention_only_decoder_forwards_saves_reloads_and_decodes_with_its_cache(tmp_path):
    from multihead.checkpoint import save_checkpoint
    from multihead.models import DecoderLM

    torch.manual_seed(0)
    model = DecoderLM(DecoderConfig(**ATTN_ONLY)).eval()
    with_ffn = DecoderLM(DecoderConfig(**{**ATTN_ONLY, "ffn_dim": None}))
    # Per block, the feed-forward (2 E F + F + E) and its norm (2 E) are gone.
    e, f = 32, 4 * 32
    assert with_ffn.num_parameters() - model.num_parameters() == 2 * (2 * e * f + f + e + 2 * e)
    x = torch.randint(0, 20, (2, 9))
    logits = model(x)
    assert logits.shape == (2, 9, 20) and torch.isfinite(logits).all()

    save_checkpoint(tmp_path, model=model, kind=model.config.kind, config=model.config.to_dict())
    back = DecoderLM.from_checkpoint(tmp_path)
    assert back.config.ffn_dim == 0 and back.blocks[1].ffn is None
    torch.testing.assert_close(back(x), logits)

    cache = model.new_cache(2, 9)
    steps = [model(x[:, :4], cache=cache)]  # a prompt, then one token at a time
    steps += [model(x[:, t : t + 1], cache=cache) for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), logits, atol=1e-5, rtol=1e-5)
