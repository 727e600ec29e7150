"""prune_iteratively: Michel et al.'s global iterative pruning and its curve."""

import math

import pytest
import torch

from multihead.analysis import gradient_importance, lm_loss, lowest_heads, prune_iteratively
from multihead.models import DecoderConfig, DecoderLM

pytestmark = pytest.mark.usefixtures("one_thread")


def model_and_data():
    torch.manual_seed(0)
    cfg = DecoderConfig(vocab_size=20, d_model=32, num_layers=3, num_heads=4, num_kv_heads=2)
    g = torch.Generator().manual_seed(3)
    data = [torch.randint(0, 20, (4, 9), generator=g) for _ in range(2)]
    return DecoderLM(cfg).double(), data


def mean_loss(data):
    return lambda m: float(torch.cat([lm_loss(m, b) for b in data]).mean().detach())


def test_the_curve_records_every_step_and_the_pruned_model_equals_its_masked_original():
    model, data = model_and_data()
    original, _ = model_and_data()
    curve = prune_iteratively(
        model, data, mean_loss(data), step_fraction=0.25, higher_is_better=False,
        timing_tokens=data[0], seq_len=9, progress=False,
    )  # fmt: skip
    heads = [p.heads for p in curve.points]
    assert heads == [12, 9, 6, 3]  # 3 per step; every layer keeps one head
    assert curve.fractions == [0.0, 0.25, 0.5, 0.75]
    assert all(
        a > b
        for a, b in zip([p.params for p in curve.points], [p.params for p in curve.points][1:])
    )
    assert curve.predicted_speedups()[0] == 1.0 and curve.predicted_speedups()[-1] > 1.0
    assert len(curve.speedups()) == 4
    mask = torch.ones(3, 4, dtype=torch.float64)
    for p in curve.points:
        for layer, ids in p.removed.items():
            mask[layer, ids] = 0.0
    assert model.config.layer_head_counts == (1, 1, 1)
    x = data[1]
    assert (model(x) - original(x, head_mask=mask)).abs().max() < 1e-6
    assert curve.metrics[0] == pytest.approx(mean_loss(data)(original))
    assert curve.to_dict()["points"][1]["removed"] == curve.points[1].removed


def test_without_rescoring_heads_go_in_the_first_ranking_order():
    model, data = model_and_data()
    first = gradient_importance(model, data, progress=False)
    curve = prune_iteratively(
        model, data, mean_loss(data), step_fraction=1 / 12, rescore=False,
        higher_is_better=False, max_fraction=0.25, progress=False,
    )  # fmt: skip
    order = [p.removed for p in curve.points[1:]]
    assert len(order) == 3
    merged = {}
    for spec in order:
        for layer, ids in spec.items():
            merged.setdefault(layer, []).extend(ids)
    assert {k: sorted(v) for k, v in merged.items()} == lowest_heads(first, 0.25)


def test_stops_at_the_first_point_below_the_fraction_of_the_original_metric():
    model, data = model_and_data()
    heads_left = lambda m: sum(b.attn.num_heads for b in m.blocks) / 12  # noqa: E731
    curve = prune_iteratively(
        model, data, heads_left, step_fraction=1 / 6, stop_below=0.6, progress=False
    )
    assert [p.heads for p in curve.points] == [12, 10, 8, 6]  # 6/12 < 0.6: stop there
    lower = prune_iteratively(
        model_and_data()[0], data, lambda m: 12 / sum(b.attn.num_heads for b in m.blocks),
        step_fraction=1 / 6, stop_below=0.6, higher_is_better=False, progress=False,
    )  # fmt: skip
    assert [p.heads for p in lower.points] == [12, 10, 8, 6]


def test_emptying_layers_only_when_allowed_and_bad_eval_is_named():
    model, data = model_and_data()
    curve = prune_iteratively(
        model, data, mean_loss(data), step_fraction=0.5, allow_empty_layer=True,
        higher_is_better=False, progress=False,
    )  # fmt: skip
    assert [p.heads for p in curve.points] == [12, 6, 0]
    assert math.isfinite(curve.metrics[-1])
    with pytest.raises(ValueError, match="eval_fn returned nan"):
        prune_iteratively(model_and_data()[0], data, lambda m: float("nan"), progress=False)
    with pytest.raises(ValueError, match="step_fraction"):
        prune_iteratively(model_and_data()[0], data, mean_loss(data), step_fraction=0)
