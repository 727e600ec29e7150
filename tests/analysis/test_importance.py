"""gradient_importance and ablation_importance against independent computations."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from multihead import MultiHeadAttention
from multihead.analysis import ablation_importance, gradient_importance, lm_loss
from multihead.models import DecoderConfig, DecoderLM, Encoder, EncoderConfig
from tests import reference

pytestmark = pytest.mark.usefixtures("one_thread")


def lm(**kw):
    torch.manual_seed(0)
    cfg = {"vocab_size": 20, "d_model": 32, "num_layers": 2, "num_heads": 4, **kw}
    return DecoderLM(DecoderConfig(**cfg)).double()


def batches(n=2, b=3, t=7, vocab=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (b, t), generator=g) for _ in range(n)]


def per_example_reference(model, data):
    """Michel et al.'s I_h: one example at a time through the model's own head_mask,
    |d loss / d mask| per example, averaged (no hooks, no batching)."""
    total, count = torch.zeros(model.config.num_layers, model.config.num_heads), 0
    for batch in data:
        for row in batch:
            mask = torch.ones(model.config.num_layers, model.config.num_heads, dtype=torch.float64)
            mask.requires_grad_(True)
            logits = model(row[None, :-1], head_mask=mask)  # (1, T-1, V)
            F.cross_entropy(logits[0], row[1:]).backward()
            total += mask.grad.abs().float()
            count += 1
    return total / count  # (L, H)


@pytest.mark.parametrize("kw", [{}, {"num_kv_heads": 2, "position": "alibi"}])
def test_gradient_importance_is_the_mean_of_per_example_absolute_gradients(kw):
    model, data = lm(**kw), batches()
    got = gradient_importance(model, data, normalize=False, progress=False)
    expect = per_example_reference(model, data)
    torch.testing.assert_close(torch.stack(got), expect, rtol=1e-5, atol=1e-7)
    # Not the absolute value of the batch's gradient: per-example signs must not cancel.
    mask = torch.ones(2, 4, dtype=torch.float64, requires_grad=True)
    x = torch.cat(data)
    F.cross_entropy(model(x[:, :-1], head_mask=mask).flatten(0, 1), x[:, 1:].flatten()).backward()
    assert (torch.stack(got) > mask.grad.abs().float() + 1e-6).any()


def test_normalized_scores_have_unit_l2_norm_per_layer_and_keep_the_order():
    model, data = lm(), batches()
    raw = gradient_importance(model, data, normalize=False, progress=False)
    norm = gradient_importance(model, data, progress=False)
    for r, n in zip(raw, norm, strict=True):
        assert math.isclose(float(n.norm()), 1.0, rel_tol=1e-6)
        torch.testing.assert_close(n, r / r.norm())


def test_scalar_mean_loss_equals_per_example_losses_and_xy_batches_work():
    model, data = lm(), batches()
    pairs = [(x[:, :-1], x[:, 1:]) for x in data]
    per_example = gradient_importance(model, pairs, normalize=False, progress=False)
    scalar = gradient_importance(
        model, pairs, lambda m, b: lm_loss(m, b).mean(), normalize=False, progress=False
    )
    torch.testing.assert_close(scalar, per_example)
    torch.testing.assert_close(
        per_example, gradient_importance(model, data, normalize=False, progress=False)
    )


def test_pruned_model_scores_its_remaining_heads_in_order():
    from multihead.analysis import prune_heads

    full = lm()
    data = batches()
    masked = per_example_reference(full, data)  # unpruned: the heads we keep score the same
    pruned = prune_heads(lm(), {0: [1], 1: [0, 2]})
    got = gradient_importance(pruned, data, normalize=False, progress=False)
    assert [tuple(s.shape) for s in got] == [(3,), (2,)]
    # Removing heads changes the others' gradients, so compare with a masked reference.
    ref = torch.zeros(2, 4)
    for batch in data:
        for row in batch:
            mask = torch.tensor([[1.0, 0, 1, 1], [0, 1, 0, 1]], dtype=torch.float64)
            gate = torch.ones(2, 4, dtype=torch.float64, requires_grad=True)
            out = full(row[None, :-1], head_mask=mask * gate)
            F.cross_entropy(out[0], row[1:]).backward()
            ref += gate.grad.abs().float()
    ref /= 6
    torch.testing.assert_close(got[0], ref[0, [0, 2, 3]], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got[1], ref[1, [1, 3]], rtol=1e-5, atol=1e-7)
    assert not torch.allclose(masked[0, [0, 2, 3]], got[0])


class Tiny(nn.Module):
    """A user's own module: attention on float inputs, a readout, per-example MSE."""

    def __init__(self):
        super().__init__()
        self.attn = MultiHeadAttention(16, 4, num_kv_heads=2)
        self.read = nn.Linear(16, 1)

    def forward(self, x):
        return self.read(self.attn(x, is_causal=True)[0])  # (B, T, 1)


def tiny_loss(model, batch):
    x, y = batch
    return (model(x)[..., 0] - y).pow(2).mean(dim=1)  # (B,)


def tiny_data(n=3):
    g = torch.Generator().manual_seed(2)
    return [
        (torch.randn(4, 5, 16, generator=g, dtype=torch.float64),
         torch.randn(4, 5, generator=g, dtype=torch.float64))
        for _ in range(n)
    ]  # fmt: skip


def tiny_reference_loss(model, data, head=None, mean=None):
    """Mean per-example loss recomputed from the float64 oracle, head ``head`` replaced by
    ``mean`` (Dv,) (or zero when mean is None)."""
    mha, losses = model.attn, []
    for x, y in data:
        q, k, v = mha.project(x, x, x)
        allowed = torch.ones(5, 5, dtype=torch.bool).tril()
        out, _ = reference.attention(q, k, v, allowed=allowed)  # (B, H, T, D)
        if head is not None:
            out[:, head] = 0.0 if mean is None else mean
        merged = out.transpose(1, 2).reshape(x.shape[0], 5, 16)  # (B, T, H*D)
        pred = model.read(mha.out_proj(merged))[..., 0]  # (B, T)
        losses.append((pred - y).pow(2).mean(dim=1))
    return float(torch.cat(losses).mean().detach())


def tiny_head_means(model, data):
    outs = []
    for x, _ in data:
        q, k, v = model.attn.project(x, x, x)
        out, _ = reference.attention(q, k, v, allowed=torch.ones(5, 5, dtype=torch.bool).tril())
        outs.append(out)
    return torch.cat(outs).mean(dim=(0, 2))  # (H, D)


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_ablation_importance_is_the_loss_change_of_removing_one_head(mode):
    torch.manual_seed(0)
    model, data = Tiny().double(), tiny_data()
    got = ablation_importance(model, data, tiny_loss, mode=mode, progress=False)
    base = tiny_reference_loss(model, data)
    means = tiny_head_means(model, data)
    expect = [
        tiny_reference_loss(model, data, h, None if mode == "zero" else means[h]) - base
        for h in range(4)
    ]
    torch.testing.assert_close(got[0], torch.tensor(expect, dtype=torch.float32))


def test_mean_ablation_of_a_constant_head_changes_nothing():
    torch.manual_seed(0)
    model, data = Tiny().double(), tiny_data()
    with torch.no_grad():  # KV head 0 (query heads 0, 1) outputs its value bias everywhere
        model.attn.in_proj.weight[24:28].zero_()  # W_V rows of KV head 0: [W_q 16; W_k 8; W_v 8]
    zero = ablation_importance(model, data, tiny_loss, mode="zero", progress=False)[0]
    mean = ablation_importance(model, data, tiny_loss, mode="mean", progress=False)[0]
    assert mean[:2].abs().max() < 1e-6 < zero[:2].abs().min()


def test_gradient_importance_on_a_users_module_and_an_encoder():
    torch.manual_seed(0)
    model, data = Tiny().double(), tiny_data()
    got = gradient_importance(model, data, tiny_loss, normalize=False, progress=False)[0]
    ref = torch.zeros(4, dtype=torch.float64)
    for x, y in data:  # one example at a time, the module's own head_mask
        for b in range(4):
            gate = torch.ones(4, dtype=torch.float64, requires_grad=True)
            out = model.read(model.attn(x[b : b + 1], is_causal=True, head_mask=gate)[0])
            (out[0, :, 0] - y[b]).pow(2).mean().backward()
            ref += gate.grad.abs()
    torch.testing.assert_close(got, (ref / 12).float())

    enc = Encoder(EncoderConfig(vocab_size=20, d_model=16, num_layers=2, num_heads=2)).double()
    scores = gradient_importance(
        enc, batches(), lambda m, x: m(x)[1].pow(2).sum(-1), progress=False
    )
    assert [tuple(s.shape) for s in scores] == [(2,), (2,)]


def test_scoring_leaves_training_mode_and_gradients_alone():
    model = lm()
    model.train()
    gradient_importance(model, batches(), progress=False)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert not model.blocks[0].attn._forward_pre_hooks  # hooks removed


def test_bad_inputs_are_named():
    model = lm()
    with pytest.raises(ValueError, match="yielded no batches"):
        gradient_importance(model, [], progress=False)
    with pytest.raises(ValueError, match="yielded no batches"):
        ablation_importance(model, iter([]), progress=False)
    with pytest.raises(ValueError, match="no MultiHeadAttention"):
        gradient_importance(nn.Linear(2, 2), batches(), progress=False)

    def nan_on_second(m, batch):
        loss = lm_loss(m, batch)
        return loss * float("nan") if batch is data[1] else loss

    data = batches(3)
    with pytest.raises(ValueError, match="loss of batch 1 is not finite"):
        gradient_importance(model, data, nan_on_second, progress=False)
    with pytest.raises(ValueError, match="mode must be one of"):
        ablation_importance(model, data, mode="random", progress=False)
    with pytest.raises(TypeError, match="the default loss takes batches"):
        gradient_importance(model, [torch.zeros(3)], progress=False)
