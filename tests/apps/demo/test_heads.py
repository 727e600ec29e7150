"""The demo's data and measure: held-out batches, the repeated-tokens probe, and the loss on
the repeated half, which under a head mask equals the physically pruned model's."""

from __future__ import annotations

import pytest
import torch

from multihead.analysis import prune_heads
from multihead.checkpoint import save_checkpoint
from multihead.data import IGNORE
from multihead.models import DecoderConfig, DecoderLM
from multihead_apps.demo import heads


def model() -> DecoderLM:
    torch.manual_seed(0)
    cfg = dict(vocab_size=12, max_seq_len=16, d_model=16, num_layers=2, num_heads=2, ffn_dim=0)
    return DecoderLM(DecoderConfig(**cfg)).eval()


def batches():
    return heads.task_batches(
        "induction_random", vocab_size=12, seq_len=12, batch_size=4, count=2, seed=0
    )


def test_batches_are_held_out_and_fixed():
    a, b = batches(), batches()
    assert len(a) == 2 and all(torch.equal(x, y) for (x, _), (y, _) in zip(a, b))
    assert a[0][0].shape == (4, 12) and (a[0][1] != IGNORE).any()


def test_repeated_tokens_repeat():
    probe = heads.repeated_tokens(10, 9, batch_size=3, seed=1)
    assert probe.shape == (3, 8) and torch.equal(probe[:, :4], probe[:, 4:])


def test_the_loss_is_the_mean_over_scored_targets():
    m, data = model(), batches()
    with torch.no_grad():
        logits = torch.cat([m(x) for x, _ in data])  # (B, T, V)
    y = torch.cat([y for _, y in data])  # (B, T)
    keep = y != IGNORE
    want = -torch.log_softmax(logits, -1)[keep].gather(1, y[keep][:, None]).mean()
    assert heads.repeated_half_loss(m, data) == pytest.approx(float(want), rel=1e-5)


def test_masked_loss_equals_the_pruned_models_and_survives_reload(tmp_path):
    m, data = model(), batches()
    masked = heads.repeated_half_loss(m, data, heads.removal_mask(2, 2, [(0, 0)]))
    pruned = prune_heads(m, {0: [0]})
    assert heads.repeated_half_loss(pruned, data) == pytest.approx(masked, rel=1e-5)
    cfg = pruned.config
    save_checkpoint(tmp_path, model=pruned, kind=cfg.kind, config=cfg.to_dict())
    back = DecoderLM.from_checkpoint(tmp_path)
    assert heads.repeated_half_loss(back, data) == pytest.approx(masked, rel=1e-5)


def test_nothing_to_score_is_named():
    x = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="no scored targets"):
        heads.repeated_half_loss(model(), [(x, torch.full((1, 4), IGNORE))])
