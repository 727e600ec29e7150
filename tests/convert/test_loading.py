"""load_model tells multihead checkpoints from Hugging Face directories and gives each its
tokenizer; `multihead generate --checkpoint HF_DIR` continues text with the checkpoint's
tokenizer.json, greedily equal to transformers."""

import json

import pytest
import tokenizers
import torch

from multihead.checkpoint import save_checkpoint
from multihead.cli import main
from multihead.convert import ByteTokenizer, Tokenizer, checkpoint_format, load_model
from multihead.data import english
from multihead.models import DecoderConfig, DecoderLM, Encoder, EncoderConfig
from tests.convert.tiny_hf import build_decoder, hf_greedy, save


def write_bpe_tokenizer(path, vocab_size=96):
    """A byte-level BPE tokenizer trained on the project's sentences (offline, instant), with
    <s> and </s>, and the BOS its post-processor adds, as Llama's tokenizers have."""
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>"],
        limit_alphabet=60,  # the commonest characters; the rest become <unk>
        show_progress=False,
    )
    tok.train_from_iterator(english.sentences()[:200], trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    assert tok.get_vocab_size() <= vocab_size
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>"})
    )


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    hf = build_decoder("llama-gqa-llama3-biases")
    path = save(hf, tmp_path_factory.mktemp("llama"))
    write_bpe_tokenizer(path)
    return hf, path


def test_a_hugging_face_directory_gives_the_model_and_its_tokenizer(hf_dir):
    _, path = hf_dir
    assert checkpoint_format(path) == "huggingface"
    model, tok = load_model(path, dtype="bf16")
    assert isinstance(model, DecoderLM) and isinstance(tok, Tokenizer)
    assert (tok.bos, tok.eos) == (1, 2) and next(model.parameters()).dtype == torch.bfloat16
    assert tok.encode("The cat").ids[0, 0].item() == 1  # the BOS the post-processor adds


def test_multihead_checkpoints_give_their_model_and_tokenizer(tmp_path, hf_dir):
    enc = Encoder(EncoderConfig(vocab_size=96, d_model=16, num_layers=1, num_heads=2))
    save_checkpoint(
        tmp_path / "enc", model=enc, kind="encoder", config=enc.config.to_dict(), step=3
    )
    model, tok = load_model(tmp_path / "enc")
    assert checkpoint_format(tmp_path / "enc") == "multihead"
    assert isinstance(model, Encoder) and tok is None  # no tokenizer.json, not byte-level
    for k, v in enc.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    # A tokenizer.json beside the checkpoint is its tokenizer.
    write_bpe_tokenizer(tmp_path / "enc")
    assert isinstance(load_model(tmp_path / "enc")[1], Tokenizer)
    # A byte-level text model (vocabulary 256) reads bytes.
    dec = DecoderLM(DecoderConfig(vocab_size=256, d_model=16, num_layers=1, num_heads=2))
    save_checkpoint(
        tmp_path / "dec", model=dec, kind="decoder_lm", config=dec.config.to_dict(), step=1
    )
    assert isinstance(load_model(tmp_path / "dec")[1], ByteTokenizer)


def test_generate_with_a_hugging_face_checkpoint(hf_dir, capsys):
    hf, path = hf_dir
    _, tok = load_model(path)
    prompt = "The old man"
    argv = ["generate", "--checkpoint", str(path), "--prompt", prompt, "--temperature", "0"]
    assert main([*argv, "--max-new-tokens", "12"]) == 0
    out = capsys.readouterr().out
    ids = tok.encode(prompt).ids
    want = hf_greedy(hf, ids, 12)[0]
    if tok.eos in want:  # the CLI stops at the tokenizer's end-of-sequence token
        want = want[: want.index(tok.eos) + 1]
    assert out == prompt + tok.decode(want) + "\n"
