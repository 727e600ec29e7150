"""A pruned all-MiniLM-L6-v2 goes through to_pretrained and from_pretrained unchanged: the
reloaded model has the pruned heads and gives the same sentence embeddings, which are those
of the unpruned model with the removed heads masked."""

import copy

import torch

from multihead.analysis import prune_heads
from multihead.analysis.fidelity import embed, embedding_batches
from multihead.convert import (
    from_pretrained,
    sentence_embeddings,
    to_pretrained,
)
from tests.analysis.minilm import load, needs_minilm

SENTENCES = ["The old man fed the pigeons in the park.", "Did you lock it?", "A dog ran home."]


@needs_minilm
def test_pruned_minilm_round_trip(tmp_path):
    model, tok = load()
    remove = {0: [1, 5, 7], 2: [0, 3], 5: list(range(6))}
    pruned = prune_heads(copy.deepcopy(model), remove)
    assert pruned.config.layer_head_counts == (9, 12, 10, 12, 12, 6)
    out = to_pretrained(pruned, tmp_path / "pruned", tokenizer=tok)
    again = from_pretrained(out)
    assert again.config.layer_heads == pruned.config.layer_heads
    before = sentence_embeddings(pruned, tok, SENTENCES)
    after = sentence_embeddings(again, tok, SENTENCES)
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)
    mask = torch.ones(6, 12)
    for layer, heads in remove.items():
        mask[layer, heads] = 0.0
    (batch,) = embedding_batches(tok, SENTENCES)
    with torch.no_grad():
        masked = embed(model, batch, mask)
    # embedding_batches keeps the order; sentence_embeddings too
    torch.testing.assert_close(after, masked, atol=1e-5, rtol=0)
    assert float((after * sentence_embeddings(model, tok, SENTENCES)).sum(-1).min()) < 1.0
