"""Head specs: losses against hand-written float64 formulas, decoding, metrics, bad targets."""

from __future__ import annotations

import math

import pytest
import torch

from multihead.multitask import Binned, Classification, MultiLabel, Regression, spec_from_config

torch.manual_seed(0)


def softmax_nll(logits: list[float], k: int) -> float:
    m = max(logits)
    lse = m + math.log(sum(math.exp(z - m) for z in logits))
    return lse - logits[k]


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


# --- classification ----------------------------------------------------------------------
def test_classification_loss_decode_metrics_match_hand_computation():
    spec = Classification(4)
    logits = torch.randn(6, 4, dtype=torch.float64)
    target = torch.tensor([0, 3, 1, 1, 2, 0])
    expected = sum(softmax_nll(logits[i].tolist(), int(target[i])) for i in range(6)) / 6
    assert spec.loss(logits, target).item() == pytest.approx(expected, rel=1e-12)
    pred = [max(range(4), key=lambda c, i=i: logits[i, c].item()) for i in range(6)]
    assert spec.decode(logits).tolist() == pred
    acc = sum(p == t for p, t in zip(pred, target.tolist())) / 6
    m = spec.metrics(logits, target)
    assert m["accuracy"] == pytest.approx(acc)
    assert m["nll"] == pytest.approx(expected)


def test_classification_token_level_ignores_padding():
    spec = Classification(3, level="token")
    logits = torch.randn(2, 4, 3, dtype=torch.float64)  # (B, T, C)
    valid = torch.tensor([[True, True, True, False], [True, False, False, False]])
    # Padded positions hold an out-of-range index: must be ignored, not raise.
    target = torch.tensor([[0, 2, 1, 99], [1, -5, 7, 3]])
    real = [(0, 0), (0, 1), (0, 2), (1, 0)]
    expected = sum(softmax_nll(logits[b, t].tolist(), int(target[b, t])) for b, t in real) / 4
    assert spec.loss(logits, target, valid).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("target", "error", "match"),
    [
        (torch.tensor([0, 1]), ValueError, r"shape \(2,\) but class indices of shape \(B,\)"),
        (torch.tensor([0, 1, 3]), ValueError, r"class index 3 outside \[0, 3\)"),
        (torch.tensor([0, -1, 2]), ValueError, r"class index -1 outside"),
        (torch.tensor([0.0, 1.0, 2.0]), TypeError, r"dtype torch.float32 but integer class"),
        (torch.tensor([0.0, float("nan"), 2.0]), ValueError, r"non-finite value nan"),
        ("abc", TypeError, r"must be a tensor"),
    ],
)
def test_classification_rejects_bad_targets(target, error, match):
    spec = Classification(3)
    with pytest.raises(error, match=match):
        spec.loss(torch.randn(3, 3), target)


# --- binned ------------------------------------------------------------------------------
def test_binned_values_and_nearest_bin():
    spec = Binned(100, low=0.02, high=2.0)
    values = spec.values(dtype=torch.float64)
    assert values[0].item() == pytest.approx(0.02)
    assert values[-1].item() == pytest.approx(2.0)
    assert values[49].item() == pytest.approx(1.0)
    xs = torch.tensor([0.02, 0.0299, 0.031, 1.0, 1.999, 2.0], dtype=torch.float64)
    nearest = [min(range(100), key=lambda i, x=x: abs(values[i].item() - x)) for x in xs.tolist()]
    assert spec.bin_index(xs).tolist() == nearest


def test_binned_loss_is_cross_entropy_on_nearest_bin_and_decodes_to_bin_value():
    spec = Binned(5, low=-1.0, high=1.0)  # values -1, -0.5, 0, 0.5, 1
    logits = torch.randn(4, 5, dtype=torch.float64)
    target = torch.tensor([-1.0, 0.2, 0.3, 1.0], dtype=torch.float64)
    bins = [0, 2, 3, 4]  # 0.2 is nearest 0.0, 0.3 nearest 0.5
    expected = sum(softmax_nll(logits[i].tolist(), bins[i]) for i in range(4)) / 4
    assert spec.loss(logits, target).item() == pytest.approx(expected, rel=1e-12)
    vals = [-1.0, -0.5, 0.0, 0.5, 1.0]
    decoded = [vals[max(range(5), key=lambda c, i=i: logits[i, c].item())] for i in range(4)]
    assert spec.decode(logits).tolist() == pytest.approx(decoded)
    m = spec.metrics(logits, spec.check_target("t", target, (4,)))
    truth = [vals[b] for b in bins]
    assert m["mae"] == pytest.approx(sum(abs(d - t) for d, t in zip(decoded, truth)) / 4)


@pytest.mark.parametrize(
    ("target", "match"),
    [
        (torch.tensor([0.5, 1.5]), r"value 1.5 outside the binned range \[0.0, 1.0\]"),
        (torch.tensor([-0.01, 0.5]), r"value -0.01 outside the binned range"),
        (torch.tensor([float("nan"), 0.5]), r"non-finite value nan"),
        (torch.tensor([0.5, 0.5, 0.5]), r"shape \(3,\) but values of shape \(B,\) = \(2,\)"),
    ],
)
def test_binned_rejects_bad_targets(target, match):
    spec = Binned(10, low=0.0, high=1.0)
    with pytest.raises(ValueError, match=match):
        spec.loss(torch.randn(2, 10), target)


def test_binned_rejects_bad_config():
    with pytest.raises(ValueError, match="low must be below high"):
        Binned(10, low=1.0, high=1.0)
    with pytest.raises(ValueError, match="num_bins must be an integer >= 2, got 1"):
        Binned(1, low=0.0, high=1.0)


# --- regression --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("low", "high", "fn"),
    [
        (None, None, lambda z: z),
        (-2.0, 3.0, lambda z: -2.0 + 5.0 * sigmoid(z)),
        (1.0, None, lambda z: 1.0 + math.log1p(math.exp(z))),
        (None, 4.0, lambda z: 4.0 - math.log1p(math.exp(z))),
    ],
)
def test_regression_bounds_shape_output_and_loss_is_mse(low, high, fn):
    spec = Regression(low=low, high=high)
    raw = torch.randn(5, 1, dtype=torch.float64)
    out = spec.output(raw)
    assert out.shape == (5,)
    expected_out = [fn(z) for z in raw.flatten().tolist()]
    assert out.tolist() == pytest.approx(expected_out, rel=1e-12)
    lo = -1.9 if low is None else low + 0.1
    hi = 3.9 if high is None else high - 0.1
    target = torch.linspace(lo, hi, 5, dtype=torch.float64)
    mse = sum((o - t) ** 2 for o, t in zip(expected_out, target.tolist())) / 5
    assert spec.loss(out, target).item() == pytest.approx(mse, rel=1e-12)


def test_regression_multi_dim_and_errors():
    spec = Regression(dim=3, low=0.0)
    out = spec.output(torch.randn(4, 3))
    assert out.shape == (4, 3)
    assert spec.to_python(out[0]) == pytest.approx(out[0].tolist())
    with pytest.raises(ValueError, match=r"shape \(4,\) but values of shape \(B, K\) = \(4, 3\)"):
        spec.loss(out, torch.ones(4))
    with pytest.raises(ValueError, match=r"value -1 below low=0.0"):
        spec.loss(out, -torch.ones(4, 3))
    with pytest.raises(ValueError, match="non-finite value nan"):
        spec.loss(out, torch.full((4, 3), float("nan")))
    with pytest.raises(ValueError, match="non-finite value inf"):
        spec.loss(out, torch.full((4, 3), float("inf")))


# --- multi-label -------------------------------------------------------------------------
def test_multilabel_loss_is_mean_bce_and_metrics():
    spec = MultiLabel(3)
    logits = torch.randn(4, 3, dtype=torch.float64)
    target = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]])
    total = 0.0
    for i in range(4):
        for j in range(3):
            p, y = sigmoid(logits[i, j].item()), target[i, j].item()
            total -= y * math.log(p) + (1 - y) * math.log(1 - p)
    assert spec.loss(logits, target).item() == pytest.approx(total / 12, rel=1e-10)
    pred = (logits > 0).long()
    tp = int(((pred == 1) & (target == 1)).sum())
    fp = int(((pred == 1) & (target == 0)).sum())
    fn = int(((pred == 0) & (target == 1)).sum())
    m = spec.metrics(logits, target.float())
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m["exact_match"] == pytest.approx(float((pred == target).all(1).float().mean()))
    with pytest.raises(ValueError, match="must be 0 or 1"):
        spec.loss(logits, target * 2)
    with pytest.raises(ValueError, match=r"\(B, L\) = \(4, 3\)"):
        spec.loss(logits, target[:, :2])


# --- configs -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        Classification(5, level="token", hidden=8),
        Binned(100, low=0.01, high=1.0, pooling="last"),
        Regression(dim=2, low=-1.0, high=1.0),
        MultiLabel(7, threshold=0.3, pooling="max"),
    ],
)
def test_spec_config_round_trip(spec):
    assert spec_from_config(spec.to_config()) == spec


def test_spec_config_errors():
    with pytest.raises(ValueError, match="unknown head type 'ranking'"):
        spec_from_config({"type": "ranking"})
    with pytest.raises(ValueError, match=r"unknown fields \['bins'\]"):
        spec_from_config({"type": "binned", "bins": 3, "num_bins": 3, "low": 0, "high": 1})
    with pytest.raises(ValueError, match="level must be one of"):
        Classification(2, level="sentence")
    with pytest.raises(ValueError, match="pooling must be one of"):
        Classification(2, pooling="sum")
