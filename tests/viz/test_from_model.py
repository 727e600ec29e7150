"""view(model, tokens): the weights it captures are the model's attention (checked against a
hand-computed one-layer model), heads keep their original ids after pruning, tokens are
labelled readably, and bad input is named."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from multihead.models import DecoderConfig, DecoderLM, Encoder, EncoderConfig
from multihead.viz import view
from multihead.viz.from_model import capture_weights, observe_weights, token_ids


def decoder(**kw) -> DecoderLM:
    torch.manual_seed(0)
    cfg = dict(vocab_size=256, max_seq_len=32, d_model=32, num_layers=2, num_heads=4)
    return DecoderLM(DecoderConfig(**{**cfg, **kw})).eval()


def meta(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="mh-meta">(.*?)</script>', page)
    return json.loads(found.group(1))


def test_captured_weights_are_softmax_of_the_models_queries_and_keys():
    """One attention-only layer without positions: the weights are softmax(q k^T / sqrt(D))
    over the causal keys, q and k from the packed input projection of norm1(embedding)."""
    model = decoder(num_layers=1, position="none", ffn_dim=0).double()
    ids = torch.tensor([[5, 9, 5, 7, 1, 9]])
    (got,) = capture_weights(model, ids)
    block, d = model.blocks[0], model.config.head_size
    x = block.norm1(model.embed.tokens(ids))[0]  # (T, E)
    q, k, _ = (x @ block.attn.in_proj.weight.T + block.attn.in_proj.bias).split(4 * d, dim=-1)
    q = q.view(6, 4, d).transpose(0, 1)  # (H, T, D)
    k = k.view(6, 4, d).transpose(0, 1)  # (H, T, D)
    scores = q @ k.transpose(1, 2) / math.sqrt(d)  # (H, T, T)
    future = ~torch.ones(6, 6, dtype=torch.bool).tril()  # True = masked
    want = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    torch.testing.assert_close(got.double(), want, atol=1e-6, rtol=1e-6)
    assert got.dtype == torch.float32 and got.shape == (4, 6, 6)


def test_capture_agrees_with_the_observers_and_leaves_the_model_as_it_was():
    model = decoder().train()
    ids = torch.randint(0, 256, (1, 9))
    captured = capture_weights(model, ids)
    assert model.training  # restored
    observed = observe_weights(model.eval(), ids)
    for c, o in zip(captured, observed):
        torch.testing.assert_close(c, o[0])
    assert all(not mha._observers for mha in (b.attn for b in model.blocks))


def test_byte_level_text_shows_characters_and_the_page_is_offline():
    page = view(decoder(), "aé b")
    m = meta(page)
    assert m["tokens"]["q"] == ["a", "é", "·", "␣", "b"]
    assert "://" not in page and "src=" not in page
    assert "<title>DecoderLM</title>" in page


def test_a_pruned_model_shows_original_head_ids_and_the_report_gets_model_info():
    model = decoder(layer_heads=[[0, 2, 3], [1]])
    report = {"heads": [{"layer": 1, "head": 1, "roles": ["induction"], "scores": {"x": 0.5}}]}
    page = view(model, [1, 2, 3, 4], report=report, title="pruned")
    m = meta(page)
    assert [layer["ids"] for layer in m["layers"]] == [[0, 2, 3], [1]]
    assert m["report"]["heads"][0]["roles"] == ["induction"]
    assert "num_layers <code>2</code>" in page and "<title>pruned</title>" in page


def test_encoder_ids_without_tokenizer_are_labelled_by_number():
    torch.manual_seed(0)
    model = Encoder(EncoderConfig(vocab_size=40, d_model=16, num_layers=1, num_heads=2)).eval()
    page = view(model, torch.tensor([[3, 14, 15]]))
    assert meta(page)["tokens"]["q"] == ["3", "14", "15"]
    assert "bidirectional (encoder)" in page


class FakeTokenizer:
    def encode(self, text):
        from types import SimpleNamespace

        return SimpleNamespace(ids=torch.tensor([[1, 2, 3]]), tokens=[["[CLS]", "hi", "[SEP]"]])

    def id_to_token(self, i):
        return f"t{i}"


def test_a_tokenizer_encodes_text_and_labels_ids():
    torch.manual_seed(0)
    model = Encoder(EncoderConfig(vocab_size=40, d_model=16, num_layers=1, num_heads=2)).eval()
    tok = FakeTokenizer()
    ids, labels = token_ids(model, "hi", tok)
    assert ids.tolist() == [[1, 2, 3]] and labels == ["[CLS]", "hi", "[SEP]"]
    assert token_ids(model, [4, 5], tok)[1] == ["t4", "t5"]


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ("text", r"not byte-level and no tokenizer"),
        ([], r"tokens is empty"),
        ([1, 99], r"token ids must be in \[0, vocab_size=40\), got ids from 1 to 99"),
        (torch.ones(2, 3, dtype=torch.long), r"shape \(T,\) or \(1, T\), got shape \(2, 3\)"),
    ],
)
def test_bad_tokens_are_named(tokens, message):
    model = DecoderLM(DecoderConfig(vocab_size=40, d_model=16, num_layers=1, num_heads=2))
    with pytest.raises(ValueError, match=message):
        view(model, tokens)


def test_a_model_without_attention_is_refused():
    with pytest.raises(ValueError, match="has no MultiHeadAttention layer"):
        capture_weights(torch.nn.Linear(2, 2), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        view("model", [1])
