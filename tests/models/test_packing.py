"""Sequence packing: the layout, and a packed encoder equal to each sequence encoded alone."""

import pytest
import torch

from multihead.models import Encoder, EncoderConfig
from multihead.models.packing import pack_sequences


def test_first_fit_decreasing_layout_and_block_diagonal_mask():
    ids = torch.arange(1, 13).view(4, 3)  # (N, T)
    lengths = torch.tensor([1, 3, 2, 2])
    p = pack_sequences(ids, lengths)
    # Rows of 3: [seq 1], [seq 2, seq 0], [seq 3, free].
    assert p.segments.tolist() == [[1, 1, 1], [2, 2, 0], [3, 3, -9]]
    assert p.positions.tolist() == [[0, 1, 2], [0, 1, 0], [0, 1, 0]]
    assert p.tokens.tolist() == [[4, 5, 6], [7, 8, 1], [10, 11, 0]]
    allowed = p.allowed()
    assert allowed.shape == (3, 1, 3, 3)
    assert allowed[2, 0].tolist() == [
        [True, True, False],
        [True, True, False],
        [False] * 2 + [True],
    ]


def test_sequence_means_average_each_sequence():
    p = pack_sequences(torch.ones(3, 2, dtype=torch.long), torch.tensor([2, 1, 1]))
    hidden = torch.arange(p.tokens.numel(), dtype=torch.float32).view(*p.tokens.shape, 1)
    flat = hidden.flatten()
    want = [flat[p.segments.flatten() == i].mean().item() for i in range(3)]
    assert p.sequence_means(hidden).flatten().tolist() == pytest.approx(want)


@pytest.mark.parametrize("position", ["learned", "none"])
def test_packed_encoder_equals_each_sequence_alone(position):
    torch.manual_seed(0)
    cfg = EncoderConfig(vocab_size=50, d_model=32, num_layers=2, num_heads=4, position=position)
    model = Encoder(cfg).eval()
    lengths = torch.tensor([7, 3, 5, 2, 4, 1])
    ids = torch.randint(1, 50, (6, 7))
    packed = pack_sequences(ids, lengths)
    assert packed.tokens.shape[0] < 6  # packing saved rows
    with torch.no_grad():
        hidden = model.packed_hidden_states(packed)  # (R, L, E)
        for i, n in enumerate(lengths.tolist()):
            alone = model.hidden_states(ids[i : i + 1, :n])[0]  # (n, E)
            torch.testing.assert_close(hidden[packed.segments == i], alone, atol=1e-5, rtol=0)


def test_bad_lengths_are_refused():
    with pytest.raises(ValueError, match="lengths must lie in"):
        pack_sequences(torch.zeros(2, 3, dtype=torch.long), torch.tensor([4, 1]))
    with pytest.raises(ValueError, match="lengths has shape"):
        pack_sequences(torch.zeros(2, 3, dtype=torch.long), torch.tensor([1]))
