"""Embedding fidelity: embeddings under head masks, the Jacobian importance checked against
full per-sentence Jacobians (an explicit loop in float64), Michel et al.'s fidelity gradient
vanishing at the unpruned model, and masking equal to physical pruning."""

import pytest
import torch

from multihead.analysis.fidelity import (
    cosines,
    embed,
    embedding_batches,
    fidelity_importance,
    jacobian_importance,
    mean_cosine,
    reference_embeddings,
)
from multihead.convert import select_layer_heads
from multihead.models import Encoder, EncoderConfig


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    cfg = EncoderConfig(vocab_size=40, d_model=16, num_layers=2, num_heads=4, max_seq_len=16)
    return Encoder(cfg).double().eval()


@pytest.fixture
def batches():
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 40, (3, 6), generator=g)
    real = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 5 + [0]], dtype=torch.bool)
    return [(ids, real), (ids[:2, :4], torch.ones(2, 4, dtype=torch.bool))]


def test_embed_is_normalised_mean_of_real_tokens(encoder, batches, one_thread):
    ids, real = batches[0]
    e = embed(encoder, batches[0])
    hidden = encoder.hidden_states(ids, padding_mask=real)
    n = int(real[1].sum())
    mean = hidden[1, :n].mean(0)
    torch.testing.assert_close(e[1], mean / mean.norm())


def test_jacobian_importance_matches_explicit_per_sentence_jacobians(encoder, batches, one_thread):
    mask = torch.ones(2, 4, dtype=torch.float64)
    mask[0, 1] = 0.0
    got = jacobian_importance(encoder, batches, head_mask=mask, seed=5)
    g = torch.Generator().manual_seed(5)
    total, count = torch.zeros(2, 4, dtype=torch.float64), 0
    for ids, real in batches:
        v_all = torch.randn((ids.shape[0], 16), generator=g).double()  # drawn as the code does
        for i in range(ids.shape[0]):
            one = (ids[i : i + 1], real[i : i + 1])

            def e_of(m, one=one):
                return embed(encoder, one, m)[0]  # (E,)

            jac = torch.autograd.functional.jacobian(e_of, mask, vectorize=True)  # (E, L, H)
            e = e_of(mask).detach()
            v = v_all[i] - (v_all[i] @ e) * e
            total += torch.einsum("e,elh->lh", v, jac).abs()
            count += 1
    expected = total / count * (mask != 0)
    torch.testing.assert_close(got.double(), expected)
    assert float(got[0, 1]) == 0.0 and bool((got[mask != 0] > 0).all())


def test_fidelity_gradient_vanishes_at_the_unpruned_model(encoder, batches, one_thread):
    refs = reference_embeddings(encoder, batches)
    at_full = fidelity_importance(encoder, batches, refs)
    assert float(at_full.max()) < 1e-10
    mask = torch.ones(2, 4, dtype=torch.float64)
    mask[1, :2] = 0.0
    away = fidelity_importance(encoder, batches, refs, head_mask=mask)
    assert float(away.max()) > 1e-4


def test_masked_cosine_equals_the_physically_pruned_model(encoder, batches, one_thread):
    refs = reference_embeddings(encoder, batches)
    assert mean_cosine(encoder, batches, refs) == 1.0
    mask = torch.ones(2, 4, dtype=torch.float64)
    mask[0, [0, 3]] = 0.0
    mask[1, 2] = 0.0
    masked = cosines(encoder, batches, refs, mask)
    pruned = select_layer_heads(encoder, [[1, 2], [0, 1, 3]])
    torch.testing.assert_close(cosines(pruned, batches, refs), masked)
    assert float(masked.min()) < 1.0


def test_embedding_batches_pad_each_batch_to_its_longest():
    class Tok:
        model_max_length = None

        def encode(self, texts, max_length=None):
            from multihead.convert import ByteTokenizer

            return ByteTokenizer().encode(texts)

    out = embedding_batches(Tok(), ["abc", "a", "abcdef"], batch_size=2)
    assert [tuple(ids.shape) for ids, _ in out] == [(2, 3), (1, 6)]
    assert out[0][1].tolist() == [[True] * 3, [True, False, False]]


def test_bad_input_is_named(encoder, batches, one_thread):
    with pytest.raises(ValueError, match="batches is empty"):
        jacobian_importance(encoder, [])
    with pytest.raises(ValueError, match=r"head_mask must be \(L, H\) = \(2, 4\)"):
        jacobian_importance(encoder, batches, head_mask=torch.ones(3, 4))
    with pytest.raises(ValueError, match="references has 1 entries for 2 batches"):
        fidelity_importance(encoder, batches, [torch.zeros(3, 16)])
    pruned = select_layer_heads(encoder, [[0, 1], [0, 1, 2, 3]])
    with pytest.raises(ValueError, match="unpruned model"):
        jacobian_importance(pruned, batches)
    with pytest.raises(ValueError, match="sentences is empty"):
        embedding_batches(None, [])
