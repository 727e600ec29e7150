"""The demo's head tools: scores on known maps, importance against a one-example-at-a-time
reference, pruning equal to masking and surviving a save and reload."""

from __future__ import annotations

import pytest
import torch

from multihead.checkpoint import save_checkpoint
from multihead.models import DecoderConfig, DecoderLM
from multihead_apps.demo import heads


def model(**kw) -> DecoderLM:
    torch.manual_seed(0)
    cfg = dict(vocab_size=12, max_seq_len=16, d_model=16, num_layers=2, num_heads=2, ffn_dim=0)
    return DecoderLM(DecoderConfig(**{**cfg, **kw})).eval()


def batches():
    return heads.task_batches(
        "induction_random", vocab_size=12, seq_len=12, batch_size=4, count=2, seed=0
    )


def test_scores_of_known_maps():
    t, n = 8, 4
    prev = torch.zeros(t, t)
    prev[0, 0] = 1
    prev[torch.arange(1, t), torch.arange(t - 1)] = 1  # query i -> key i - 1
    induction = torch.eye(t)
    second = torch.arange(n, t)
    induction[second] = 0
    induction[second, second - n + 1] = 1  # second copy: the token after the earlier one
    weights = [torch.stack((prev, induction))[None]]  # one layer (1, 2, T, T)
    s = heads.scores_from_weights(weights)
    torch.testing.assert_close(s["previous_token"], torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(s["induction"], torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close(s["duplicate_token"], torch.tensor([[0.0, 0.0]]))


def test_repeated_tokens_repeat():
    probe = heads.repeated_tokens(10, 9, batch_size=3, seed=1)
    assert probe.shape == (3, 8) and torch.equal(probe[:, :4], probe[:, 4:])


def test_gradient_importance_matches_one_example_at_a_time():
    m = model().double()
    data = batches()
    got = heads.gradient_importance(m, data)
    total, count = torch.zeros(2, 2, dtype=torch.float64), 0
    for x, y in data:
        for b in range(x.shape[0]):
            mask = torch.ones(2, 2, dtype=torch.float64, requires_grad=True)
            loss = heads.F.cross_entropy(
                m(x[b : b + 1], head_mask=mask)[0], y[b], ignore_index=-100
            )
            (g,) = torch.autograd.grad(loss, mask)
            total += g.abs()
            count += 1
    want = total / count
    want = want / want.norm(dim=1, keepdim=True)
    torch.testing.assert_close(got.double(), want)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(2, dtype=got.dtype))


def test_pruning_equals_masking_and_survives_reload(tmp_path):
    m = model()
    data = batches()
    keep = {0: [1], 1: [0, 1]}
    masked = heads.repeated_half_loss(m, data, heads.keep_mask(2, 2, keep))
    pruned = heads.prune_to(m, keep)
    assert pruned.config.layer_heads == ((1,), (0, 1))
    assert abs(heads.repeated_half_loss(pruned, data) - masked) < 1e-5
    cfg = pruned.config
    save_checkpoint(tmp_path, model=pruned, kind=cfg.kind, config=cfg.to_dict())
    back = DecoderLM.from_checkpoint(tmp_path)
    assert abs(heads.repeated_half_loss(back, data) - masked) < 1e-5


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"keep\[0\] is empty"):
        heads.prune_to(model(), {1: [0]})
    with pytest.raises(ValueError, match="no scored targets"):
        x = torch.zeros(1, 4, dtype=torch.long)
        heads.repeated_half_loss(model(), [(x, torch.full((1, 4), -100))])
