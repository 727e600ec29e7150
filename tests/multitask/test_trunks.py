"""Sequence-level multi-task networks on the project's own Encoder and DecoderLM."""

from __future__ import annotations

import pytest
import torch

from multihead.models import DecoderConfig, DecoderLM, Encoder, EncoderConfig
from multihead.multitask import (
    Classification,
    MultiTaskNetwork,
    Regression,
    TransformerTrunk,
    make_weighting,
)

SMALL = {"vocab_size": 12, "d_model": 16, "num_layers": 2, "num_heads": 2, "max_seq_len": 16}


def _net(kind: str) -> MultiTaskNetwork:
    torch.manual_seed(0)
    if kind == "encoder":
        model = Encoder(EncoderConfig(**SMALL))
        pooling = "mean"
    else:
        model = DecoderLM(DecoderConfig(**SMALL))
        pooling = "last"  # the last real token of a causal model has read the whole input
    return MultiTaskNetwork(
        TransformerTrunk(model),
        heads={
            "label": Classification(3, pooling=pooling),
            "count": Regression(pooling=pooling),
            "tags": Classification(4, level="token"),
        },
        trunk_mask_arg="padding_mask",
    )


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_padded_examples_match_unpadded(kind):
    net = _net(kind).eval()
    tokens = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 0, 0]])
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    out = net(tokens, mask=mask)
    alone = net(tokens[1:, :3], mask=mask[1:, :3])
    for name in ("label", "count"):
        torch.testing.assert_close(alone[name][0], out[name][1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alone["tags"][0], out["tags"][1, :3], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_trains_and_round_trips_through_a_checkpoint(kind, tmp_path):
    net = _net(kind)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 12, (32, 6), generator=g)
    mask = torch.ones(32, 6, dtype=torch.bool)
    mask[16:, 4:] = False
    targets = {
        "label": tokens[:, 0] % 3,
        "count": (tokens * mask).remainder(2).sum(1).float(),
        "tags": tokens % 4,
    }
    weighting = make_weighting("uncertainty", heads=net.specs)
    opt = torch.optim.Adam([*net.parameters(), *weighting.parameters()], lr=3e-3)
    first = None
    for _ in range(60):
        losses = net.losses(net(tokens, mask=mask), targets)
        first = first or {k: v.item() for k, v in losses.items()}
        opt.zero_grad()
        weighting.backward(losses, shared=net.shared_parameters())
        opt.step()
    last = {k: v.item() for k, v in net.losses(net(tokens, mask=mask), targets).items()}
    assert all(last[k] < first[k] for k in first), (first, last)
    net.save(tmp_path)
    loaded = MultiTaskNetwork.load(tmp_path)  # the trunk is rebuilt from the checkpoint alone
    assert isinstance(loaded.trunk.model, type(net.trunk.model))
    net.eval()
    a, b = net(tokens, mask=mask), loaded(tokens, mask=mask)
    for name in ("label", "count", "tags"):
        torch.testing.assert_close(a[name], b[name])


def test_trunk_rejects_other_modules():
    with pytest.raises(TypeError, match="Encoder or DecoderLM"):
        TransformerTrunk(torch.nn.Linear(2, 2))
