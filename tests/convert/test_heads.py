"""Per-layer head layouts of whole models: select_layer_heads equals head-masking the removed
heads (GQA, uneven groups, ALiBi), expand_heads spreads a pruned model over the unpruned layout
computing the same thing, and both refuse what they cannot do."""

import pytest
import torch

from multihead.convert import expand_heads, select_layer_heads
from multihead.models import DecoderConfig, DecoderLM
from tests.models.pruning import removed_mask

CFG = DecoderConfig(
    vocab_size=40,
    d_model=32,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    position="alibi",
    activation="swiglu",
    norm="rmsnorm",
)
LAYOUT = [[3, 0, 2], [1]]  # layer 0: KV heads 1 then 0 (query heads 3, 0, 2); layer 1: one head


def model():
    torch.manual_seed(0)
    return DecoderLM(CFG).eval()


def test_selecting_a_layout_equals_masking_the_removed_heads():
    full, tokens = model(), torch.randint(0, 40, (2, 9))
    pruned = select_layer_heads(model(), LAYOUT)
    assert pruned.config.layer_heads == ((3, 0, 2), (1,))
    assert pruned.blocks[0].attn.kv_heads_of_queries() == [0, 1, 0]  # KV 1 first, uneven
    with torch.no_grad():
        want = full(tokens, head_mask=removed_mask(pruned.config, torch.float32))
        torch.testing.assert_close(pruned(tokens), want, atol=1e-5, rtol=0)
    # Layouts are original ids: pruning again keeps a subset of what is left.
    select_layer_heads(pruned, [[2, 3], [1]])
    assert [b.attn.num_heads for b in pruned.blocks] == [2, 1]
    with pytest.raises(ValueError, match=r"keeps heads \[0\], which layer 0 no longer has"):
        select_layer_heads(pruned, [[0, 2], [1]])


def test_expanding_a_pruned_model_computes_the_same():
    pruned, tokens = select_layer_heads(model(), LAYOUT), torch.randint(0, 40, (2, 9))
    full = expand_heads(pruned)
    assert full.config.uniform_heads and [b.attn.num_heads for b in full.blocks] == [4, 4]
    assert bool((full.blocks[1].attn.W_O[[0, 2, 3]] == 0).all())  # removed: zero columns
    with torch.no_grad():
        torch.testing.assert_close(full(tokens), pruned(tokens), atol=1e-5, rtol=0)
    assert full.head.weight is full.embed.tokens.weight  # still tied


def test_invalid_layouts_change_nothing():
    m = model()
    with pytest.raises(ValueError, match="layer_heads has 1 entries but num_layers=2"):
        select_layer_heads(m, [[0]])
    with pytest.raises(ValueError, match="drops KV heads"):
        select_layer_heads(m, [[0, 3], [1]], [[0], [0]])
    assert m.config.layer_heads is None and m.blocks[0].attn.num_heads == 4
