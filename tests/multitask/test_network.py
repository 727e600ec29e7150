"""MultiTaskNetwork: forward/predict, losses, freeze, add_head, checkpoints, sequence trunks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from multihead.checkpoint import load_checkpoint
from multihead.multitask import (
    MLP,
    Binned,
    Classification,
    HeadOutputs,
    MultiLabel,
    MultiTaskNetwork,
    Regression,
    make_weighting,
    pool,
)


def make_net(seed: int = 0) -> MultiTaskNetwork:
    torch.manual_seed(seed)
    return MultiTaskNetwork(
        MLP(in_features=5, hidden=(16, 12)),
        heads={
            "side": Classification(2),
            "leverage": Binned(100, low=0.02, high=2.0),
            "size": Regression(low=0.0, high=1.0),
            "tags": MultiLabel(3, hidden=8),
        },
    )


def batch(n: int = 8, seed: int = 1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    targets = {
        "side": (x[:, 0] > 0).long(),
        "leverage": (x[:, 1].sigmoid() * 1.98 + 0.02),
        "size": x[:, 2].sigmoid(),
        "tags": (x[:, 2:5] > 0).float(),
    }
    return x, targets


def test_forward_returns_typed_mapping_with_per_head_shapes():
    net = make_net()
    x, _ = batch()
    out = net(x)
    assert isinstance(out, HeadOutputs)
    assert list(out) == ["side", "leverage", "size", "tags"]
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {"side": (8, 2), "leverage": (8, 100), "size": (8,), "tags": (8, 3)}
    assert out.features.shape == (8, 12) and out.mask is None
    assert ((out["size"] > 0) & (out["size"] < 1)).all()
    only = net(x, heads=["size"])
    assert list(only) == ["size"]
    torch.testing.assert_close(only["size"], out["size"])
    with pytest.raises(KeyError, match="computed \\['size'\\]"):
        only["side"]


def test_predict_gives_plain_python_values_consistent_with_decode():
    net = make_net()
    x, _ = batch(3)
    rows = net.predict(x)
    out = net(x)
    assert len(rows) == 3
    for b, row in enumerate(rows):
        assert isinstance(row["side"], int)
        assert row["side"] == int(out["side"][b].argmax())
        assert isinstance(row["leverage"], float)
        assert row["leverage"] == pytest.approx(0.02 + 0.02 * int(out["leverage"][b].argmax()))
        assert row["size"] == pytest.approx(out["size"][b].item())
        assert row["tags"] == [j for j in range(3) if out["tags"][b, j] > 0]
    assert net.training  # predict restores the mode


def test_losses_match_each_spec_and_metrics_are_per_head():
    net = make_net()
    x, targets = batch()
    out = net(x)
    losses = net.losses(out, targets)
    for name, spec in net.specs.items():
        torch.testing.assert_close(losses[name], spec.loss(out[name], targets[name]))
    metrics = net.metrics(out, targets)
    assert set(metrics["side"]) == {"accuracy", "nll"}
    assert set(metrics["leverage"]) == {"accuracy", "mae", "nll"}
    assert set(metrics["size"]) == {"mse", "mae"}
    assert set(metrics["tags"]) == {"exact_match", "label_accuracy", "f1"}
    # A batch may leave a head out.
    assert set(net.losses(out, {"size": targets["size"]})) == {"size"}


def test_bad_targets_name_the_head():
    net = make_net()
    x, targets = batch()
    out = net(x)
    bad = {
        "side": torch.full((8,), 2),
        "leverage": torch.full((8,), 2.5),
        "size": torch.full((8,), float("nan")),
        "tags": torch.ones(8, 4),
    }
    messages = {
        "side": r"head 'side' has class index 2 outside \[0, 2\)",
        "leverage": r"head 'leverage' has value 2.5 outside the binned range \[0.02, 2.0\]",
        "size": r"head 'size' has a non-finite value nan",
        "tags": r"head 'tags' has shape \(8, 4\) but 0/1 labels of shape \(B, L\) = \(8, 3\)",
    }
    for name, t in bad.items():
        with pytest.raises(ValueError, match=messages[name]):
            net.losses(out, {**targets, name: t})
    with pytest.raises(ValueError, match="unknown head 'risk'"):
        net.losses(out, {"risk": targets["size"]})
    with pytest.raises(ValueError, match="did not compute it"):
        net.losses(net(x, heads=["side"]), {"size": targets["size"]})


def test_colliding_and_bad_head_names():
    trunk = MLP(in_features=3, hidden=(4,))
    with pytest.raises(ValueError, match="'a' is given twice"):
        MultiTaskNetwork(trunk, heads=[("a", Classification(2)), ("a", Regression())])
    with pytest.raises(ValueError, match="collides with the trunk"):
        MultiTaskNetwork(trunk, heads={"trunk": Classification(2)})
    with pytest.raises(ValueError, match=r"must not contain '\.'"):
        MultiTaskNetwork(trunk, heads={"a.b": Classification(2)})
    with pytest.raises(TypeError, match="a HeadSpec"):
        MultiTaskNetwork(trunk, heads={"a": nn.Linear(2, 2)})
    net = MultiTaskNetwork(trunk, heads={"a": Classification(2)})
    with pytest.raises(ValueError, match="'a' collides with an existing head"):
        net.add_head("a", Regression())
    with pytest.raises(ValueError, match="has no out_features"):
        MultiTaskNetwork(nn.Identity(), heads={"a": Classification(2)})


def train_steps(net, x, targets, steps=5, lr=0.05):
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = sum(net.losses(net(x), targets).values())
        loss.backward()
        opt.step()


def test_freeze_trunk_and_heads_stops_exactly_their_updates():
    net = make_net()
    x, targets = batch()
    net.freeze("trunk", "side")
    assert net.frozen == ("trunk", "side")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    train_steps(net, x, targets)
    after = net.state_dict()
    for key in before:
        unchanged = torch.equal(before[key], after[key])
        frozen = key.startswith(("trunk.", "heads.side."))
        assert unchanged == frozen, key
    assert net.shared_parameters() == []
    net.unfreeze("trunk")
    assert net.frozen == ("side",)
    assert len(net.shared_parameters()) == 4
    with pytest.raises(ValueError, match="unknown part 'risk'"):
        net.freeze("risk")


def test_add_head_to_trained_network_keeps_old_outputs_and_trains_new_head():
    net = make_net()
    x, targets = batch()
    train_steps(net, x, targets, steps=10)
    old = net(x)
    net.freeze("trunk")
    new = net.add_head("risk", Binned(100, low=0.01, high=1.0))
    assert isinstance(new, nn.Linear) and new.in_features == 12
    out = net(x)
    for name in old:
        torch.testing.assert_close(out[name], old[name])
    assert out["risk"].shape == (8, 100)
    risk = x[:, 3].sigmoid().clamp(0.01, 1.0)
    opt = torch.optim.Adam(new.parameters(), lr=0.05)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = net.losses(net(x, heads=["risk"]), {"risk": risk})["risk"]
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    for name in old:  # the trunk was frozen and the other heads untouched
        torch.testing.assert_close(net(x)[name], old[name])


def test_save_load_round_trip(tmp_path):
    net = make_net()
    x, targets = batch()
    train_steps(net, x, targets)
    net.add_head("risk", Binned(100, low=0.01, high=1.0, hidden=4))
    net.freeze("side")
    opt = torch.optim.Adam(net.parameters())
    net.save(tmp_path / "ck", step=3, state={"optimizer": opt.state_dict()}, meta={"note": "x"})
    loaded = MultiTaskNetwork.load(tmp_path / "ck")
    assert loaded.specs == net.specs
    assert list(loaded.specs) == ["side", "leverage", "size", "tags", "risk"]  # order kept
    assert loaded.frozen == ("side",)
    a, b = net(x), loaded(x)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    ckpt = load_checkpoint(tmp_path / "ck", kind="multitask")
    assert ckpt.step == 3 and ckpt.meta == {"note": "x"}
    assert "optimizer" in ckpt.training_state()


class TinyTokens(nn.Module):
    """A stand-in sequence trunk: token ids (B, T) -> features (B, T, F)."""

    def __init__(self, vocab: int = 11, width: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.layer = nn.TransformerEncoderLayer(
            width, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True
        )

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # torch's key padding polarity is True = ignore; multihead's mask is True = real token.
        pad = None if mask is None else ~mask
        return self.layer(self.embed(tokens), src_key_padding_mask=pad)


def seq_net(seed: int = 0, **kwargs) -> MultiTaskNetwork:
    torch.manual_seed(seed)
    return MultiTaskNetwork(
        TinyTokens(),
        heads={
            "topic": Classification(3, pooling="mean"),
            "tags": Classification(4, level="token"),
            "length": Regression(pooling="last"),
        },
        features=16,
        trunk_mask_arg="mask",
        **kwargs,
    )


def test_sequence_trunk_pools_for_example_heads_and_tags_tokens():
    net = seq_net()
    tokens = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    out = net(tokens, mask=mask)
    assert out["topic"].shape == (2, 3) and out["tags"].shape == (2, 4, 4)
    assert out["length"].shape == (2,)
    feats = out.features
    torch.testing.assert_close(out["topic"], net.heads["topic"](pool(feats, mask, "mean")))
    manual_mean = feats[1, :2].mean(0)
    torch.testing.assert_close(pool(feats, mask, "mean")[1], manual_mean)
    torch.testing.assert_close(pool(feats, mask, "last")[1], feats[1, 1])
    torch.testing.assert_close(pool(feats, mask, "first")[1], feats[1, 0])
    torch.testing.assert_close(pool(feats, mask, "max")[1], feats[1, :2].max(0).values)
    # The padded example's example-level outputs equal those of the same tokens unpadded.
    alone = net(tokens[1:, :2], mask=mask[1:, :2])
    torch.testing.assert_close(alone["topic"][0], out["topic"][1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alone["length"][0], out["length"][1], rtol=1e-5, atol=1e-6)
    # Token-level loss counts only real tokens (padding targets may hold anything).
    tags = torch.tensor([[0, 1, 2, 3], [3, 2, -1, 9]])
    loss = net.losses(out, {"tags": tags})["tags"]
    logits = out["tags"][mask]
    manual = nn.functional.cross_entropy(logits, tags[mask])
    torch.testing.assert_close(loss, manual)
    rows = net.predict(tokens, mask=mask)
    assert len(rows[0]["tags"]) == 4 and len(rows[1]["tags"]) == 2
    assert isinstance(rows[1]["topic"], int)


def test_sequence_multitask_trains_and_round_trips_with_given_trunk(tmp_path):
    net = seq_net()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 11, (16, 6), generator=g)
    mask = torch.ones(16, 6, dtype=torch.bool)
    mask[8:, 4:] = False
    targets = {
        "topic": tokens[:, 0] % 3,
        "tags": tokens % 4,
        "length": mask.sum(1).float(),
    }
    weighting = make_weighting("uncertainty", heads=net.specs)
    opt = torch.optim.Adam([*net.parameters(), *weighting.parameters()], lr=1e-2)
    first = None
    for _ in range(60):
        opt.zero_grad()
        losses = net.losses(net(tokens, mask=mask), targets)
        first = first or {k: v.item() for k, v in losses.items()}
        weighting.backward(losses, shared=net.shared_parameters())
        opt.step()
    for name, v in losses.items():
        assert v.item() < 0.5 * first[name], name
    net.save(tmp_path)
    with pytest.raises(ValueError, match="pass trunk="):
        MultiTaskNetwork.load(tmp_path)
    loaded = MultiTaskNetwork.load(tmp_path, trunk=TinyTokens())
    net.eval()
    loaded.eval()
    a, b = net(tokens, mask=mask), loaded(tokens, mask=mask)
    for name in a:
        torch.testing.assert_close(a[name], b[name])


def test_sequence_errors():
    net = seq_net()
    tokens = torch.tensor([[1, 2, 3]])
    net.trunk_mask_arg = None  # so the mask reaches the network's own check
    with pytest.raises(ValueError, match=r"mask has shape \(1, 2\)"):
        net(tokens, mask=torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        net(tokens, mask=torch.ones(1, 3))
    flat = MultiTaskNetwork(
        MLP(in_features=3, hidden=(4,)), heads={"tags": Classification(2, level="token")}
    )
    with pytest.raises(ValueError, match="token-level heads need \\(B, T, F\\)"):
        flat(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"\(B, F\) or \(B, T, F\) with F = 16"):
        MultiTaskNetwork(nn.Identity(), heads={"a": Classification(2)}, features=16)(
            torch.randn(2, 5)
        )
