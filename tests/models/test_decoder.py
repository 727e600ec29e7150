"""DecoderLM against a twin built from torch.nn.TransformerEncoderLayer, generation
invariants (cache, batching, sampling options) and torch.compile."""

import pytest
import torch
from torch import nn

from multihead.models import DecoderConfig, DecoderLM, FeedForward, sample_next


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


def test_swiglu_feedforward_formula():
    torch.manual_seed(0)
    ffn = FeedForward(dim=8, hidden_dim=12, activation="swiglu", bias=False)
    x = torch.randn(2, 3, 8)
    gate, up = ffn.up.weight[:12], ffn.up.weight[12:]
    expected = (nn.functional.silu(x @ gate.T) * (x @ up.T)) @ ffn.down.weight.T
    torch.testing.assert_close(ffn(x), expected)


@pytest.mark.parametrize(
    "kw",
    [
        {"position": "rope", "num_kv_heads": 2, "activation": "swiglu", "norm": "rmsnorm"},
        {"position": "alibi", "window": 4},
        {"position": "learned", "rope_interleaved": True},
    ],
)
def test_greedy_same_with_and_without_cache_and_batched(kw):
    model = build(**kw)
    prompts = [[1, 2, 3, 4, 5, 6, 7], [8, 9], [10, 11, 12]]
    cached = model.generate(prompts, max_new_tokens=10)
    uncached = model.generate(prompts, max_new_tokens=10, use_cache=False)
    single = [model.generate([p], max_new_tokens=10)[0] for p in prompts]
    assert cached == uncached == single
    assert [len(o) for o in cached] == [10, 10, 10]


def test_stop_tokens_end_rows_and_are_included():
    model = build()
    free = model.generate([[1, 2, 3]], max_new_tokens=8)[0]
    stop = free[3]
    out = model.generate([[1, 2, 3]], max_new_tokens=8, stop_tokens=[stop])[0]
    assert out == free[: free.index(stop) + 1]


def test_sampling_options():
    model = build()
    g = torch.Generator().manual_seed(1)
    a = model.generate([[1, 2]], max_new_tokens=6, temperature=1.0, generator=g)
    g = torch.Generator().manual_seed(1)
    b = model.generate([[1, 2]], max_new_tokens=6, temperature=1.0, generator=g)
    assert a == b
    greedy = model.generate([[1, 2]], max_new_tokens=6)
    assert model.generate([[1, 2]], max_new_tokens=6, temperature=0.7, top_k=1) == greedy
    assert model.generate([[1, 2]], max_new_tokens=6, temperature=0.7, top_p=1e-6) == greedy


def test_top_k_and_top_p_filter_the_right_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    draws = {int(sample_next(logits, temperature=1.0, top_k=2, generator=g)) for _ in range(200)}
    assert draws == {0, 1}
    draws = {int(sample_next(logits, temperature=1.0, top_p=0.7, generator=g)) for _ in range(200)}
    assert draws == {0, 1}  # 0.5 < 0.7, 0.5 + 0.3 >= 0.7: the nucleus is {0, 1}


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"max_new_tokens": -1}, "max_new_tokens must be an integer >= 0"),
        ({"max_new_tokens": 2, "temperature": -1.0}, "temperature must be >= 0"),
        ({"max_new_tokens": 2, "top_k": 0}, "top_k must be a positive integer"),
        ({"max_new_tokens": 2, "top_p": 0.0}, "top_p must be in"),
        ({"max_new_tokens": 40}, "exceeds max_seq_len=32"),
    ],
)
def test_generate_rejects_bad_arguments(kw, message):
    model = build(position="learned")
    with pytest.raises(ValueError, match=message):
        model.generate([[1, 2]], **kw)


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


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_token_nll_stride_one_gives_each_token_its_full_context(position):
    model = build(position=position, max_seq_len=8)
    tokens = torch.randint(0, 50, (30,), generator=torch.Generator().manual_seed(1))
    nll = model.token_nll(tokens, context=8, stride=1, batch_size=5)
    assert nll.shape == (29,)
    for i in range(29):  # target tokens[i + 1], predicted from up to 8 tokens before it
        lo = max(0, i + 1 - 8)
        logits = model(tokens[None, lo : i + 1])[0, -1].double()  # (V,)
        expected = -torch.log_softmax(logits, -1)[tokens[i + 1]]
        torch.testing.assert_close(nll[i].double(), expected, atol=1e-5, rtol=1e-5)


def test_token_nll_with_stride_equal_context_is_non_overlapping_windows():
    model = build(max_seq_len=8)
    tokens = torch.randint(0, 50, (33,), generator=torch.Generator().manual_seed(2))
    nll = model.token_nll(tokens, context=8, stride=8)
    windows = tokens[:33].reshape(-1)[: 4 * 8 + 1]
    x = torch.stack([windows[i * 8 : i * 8 + 8] for i in range(4)])  # (4, 8)
    y = torch.stack([windows[i * 8 + 1 : i * 8 + 9] for i in range(4)])
    expected = torch.nn.functional.cross_entropy(
        model(x).transpose(1, 2), y, reduction="none"
    ).flatten()
    torch.testing.assert_close(nll, expected, atol=1e-5, rtol=1e-5)
    # Byte tensors (ByteCorpus.val is uint8) are token ids too.
    torch.testing.assert_close(model.token_nll(tokens.to(torch.uint8), context=8, stride=8), nll)


def test_token_nll_middle_stride_scores_every_token_once_with_enough_context():
    model = build(max_seq_len=8)
    tokens = torch.randint(0, 50, (40,), generator=torch.Generator().manual_seed(3))
    nll = model.token_nll(tokens, context=8, stride=3)
    full = model.token_nll(tokens, context=8, stride=1)
    # The first window's tokens are scored with the same (short) context either way.
    torch.testing.assert_close(nll[:8], full[:8], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(nll).all() and nll.shape == (39,)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"context": 9}, "context must be in"),
        ({"context": 4, "stride": 5}, "stride must be in"),
        ({"stride": 0}, "stride must be in"),
    ],
)
def test_token_nll_bad_arguments(kwargs, match):
    model = build(max_seq_len=8)
    with pytest.raises(ValueError, match=match):
        model.token_nll(torch.arange(20), **kwargs)
    with pytest.raises(ValueError, match="tokens must be"):
        model.token_nll(torch.arange(20)[None])
    with pytest.raises(ValueError, match=r"integer ids.*torch.float32"):
        model.token_nll(torch.arange(20.0))
