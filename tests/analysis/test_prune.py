"""prune_heads: physically pruned models compute what head-masked models compute."""

import pytest
import torch

from multihead import MultiHeadAttention
from multihead.analysis import (
    analyze,
    gradient_importance,
    importance_by_head,
    lowest_heads,
    original_heads,
    parse_head_spec,
    prune_heads,
    save_pruned,
)
from multihead.models import DecoderConfig, DecoderLM, Encoder, EncoderConfig

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = {0: [1, 3], 1: [0], 2: [2, 3, 0]}


def build(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = {
        "vocab_size": 40,
        "max_seq_len": 32,
        "d_model": 32,
        "num_layers": 3,
        "num_heads": 4,
        **kw,
    }
    return DecoderLM(DecoderConfig(**cfg)).double().eval()


def removed_mask(num_layers, num_heads, spec):
    """The (L, H) head mask that zeroes the heads of ``spec`` (original ids)."""
    mask = torch.ones(num_layers, num_heads, dtype=torch.float64)
    for layer, heads in spec.items():
        mask[layer, heads] = 0.0
    return mask


VARIANTS = {
    "mha": {},
    "gqa": {"num_kv_heads": 2},
    "mqa": {"num_kv_heads": 1},
    "rope": {"position": "rope", "num_kv_heads": 2},
    "alibi": {"position": "alibi"},
    "window": {"window": 4, "position": "rope"},
    "learned-nobias": {"position": "learned", "bias": False},
}


@pytest.mark.parametrize("kw", VARIANTS.values(), ids=VARIANTS.keys())
def test_pruned_model_equals_head_masked_model(kw):
    full = build(**kw)
    pruned = prune_heads(build(**kw), SPEC)
    x = torch.randint(0, 40, (2, 11))
    masked = full(x, head_mask=removed_mask(3, 4, SPEC))
    assert (pruned(x) - masked).abs().max() < 1e-6
    assert [b.attn.num_heads for b in pruned.blocks] == [2, 3, 1]
    assert pruned.config.layer_heads == ((0, 2), (1, 2, 3), (1,))


@pytest.mark.parametrize("kw", VARIANTS.values(), ids=VARIANTS.keys())
def test_kv_cache_decoding_of_a_pruned_model_equals_its_full_forward(kw):
    model = prune_heads(build(**kw), SPEC)
    x = torch.randint(0, 40, (2, 9))
    full = model(x)  # (B, T, V)
    cache = model.new_cache(2, 9)
    steps = [model(x[:, :3], cache=cache)]  # prefill, then one token at a time
    steps += [model(x[:, t : t + 1], cache=cache) for t in range(3, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-9, rtol=1e-9)


def test_gqa_drops_a_kv_head_only_when_all_its_query_heads_go():
    model = build(num_kv_heads=2)  # query heads 0, 1 -> KV 0; 2, 3 -> KV 1
    prune_heads(model, {0: [0, 1], 1: [1, 3], 2: [2]})
    attn = [b.attn for b in model.blocks]
    assert [m.num_kv_heads for m in attn] == [1, 2, 2]
    assert model.config.layer_kv_heads == ((1,), (0, 1), (0, 1))
    assert attn[2].kv_index.tolist() == [0, 0, 1]  # uneven groups: 2 + 1
    x = torch.randint(0, 40, (1, 7))
    spec = {0: [0, 1], 1: [1, 3], 2: [2]}
    masked = build(num_kv_heads=2)(x, head_mask=removed_mask(3, 4, spec))
    assert (model(x) - masked).abs().max() < 1e-6


def test_pruning_twice_takes_original_ids_and_equals_pruning_once():
    twice = prune_heads(prune_heads(build(), {0: [1]}), {0: [3], 2: [0]})
    once = prune_heads(build(), {0: [1, 3], 2: [0]})
    assert twice.config == once.config
    assert original_heads(twice) == [[0, 2], [0, 1, 2, 3], [1, 2, 3]]
    x = torch.randint(0, 40, (2, 6))
    torch.testing.assert_close(twice(x), once(x))
    with pytest.raises(ValueError, match=r"head 1 of layer 0 is not in the model.*\[0, 2\]"):
        prune_heads(twice, {0: [1]})


def test_encoder_and_a_bare_module_prune_too():
    torch.manual_seed(0)
    enc = Encoder(EncoderConfig(vocab_size=30, d_model=16, num_layers=2, num_heads=4)).eval()
    x = torch.randint(0, 30, (2, 5))
    masked = enc(x, head_mask=removed_mask(2, 4, {1: [0, 2]}).float())
    prune_heads(enc, {1: [0, 2]})
    torch.testing.assert_close(enc(x), masked, atol=1e-6, rtol=1e-5)
    assert enc.config.layer_heads == ((0, 1, 2, 3), (1, 3))

    mha = MultiHeadAttention(16, 4).double()
    q = torch.randn(1, 3, 16, dtype=torch.float64)
    expect, _ = mha(q, head_mask=torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64))
    prune_heads(mha, {0: [1]})  # no config: ids are positions
    torch.testing.assert_close(mha(q)[0], expect)


def test_emptying_a_layer_needs_the_flag_and_then_equals_masking_all_its_heads():
    model = build(num_kv_heads=2, position="alibi")
    with pytest.raises(ValueError, match="without heads; pass allow_empty_layer=True"):
        prune_heads(model, {1: [0, 1, 2, 3]})
    assert model.config.layer_heads is None  # nothing changed
    prune_heads(model, {1: [0, 1, 2, 3], 0: [2]}, allow_empty_layer=True)
    assert model.blocks[1].attn.num_heads == 0 and model.config.layer_heads[1] == ()
    x = torch.randint(0, 40, (2, 6))
    masked = build(num_kv_heads=2, position="alibi")(
        x, head_mask=removed_mask(3, 4, {1: [0, 1, 2, 3], 0: [2]})
    )
    assert (model(x) - masked).abs().max() < 1e-6


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ({3: [0]}, ValueError, "names layer 3 but the model has 3 attention layers"),
        ({0: [4]}, ValueError, r"head 4 of layer 0 is not in the model"),
        ({0: [1, 1]}, ValueError, "lists head 1 twice"),
        ({0: [1.0]}, TypeError, "not an integer head id"),
        ({"0": [1]}, TypeError, "layer numbers"),
        ([0, 1], TypeError, "must be a mapping"),
    ],
)
def test_bad_specs_are_refused_and_change_nothing(spec, error, match):
    model = build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(error, match=match):
        prune_heads(model, spec)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_model_without_attention_is_refused():
    with pytest.raises(ValueError, match="no MultiHeadAttention"):
        prune_heads(torch.nn.Linear(2, 2), {0: [0]})


def test_parse_head_spec():
    assert parse_head_spec(" 0:1,3 ; 1:0 ") == {0: [1, 3], 1: [0]}
    for bad, match in [
        ("0:1;0:2", "names layer 0 twice"),
        ("0:1,1", r"lists heads \[1\] of layer 0 twice"),
        ("0-1", "is not 'layer:head"),
        ("a:1", "is not 'layer:head"),
        ("0:", "is not 'layer:head"),
        ("", "names no heads"),
    ]:
        with pytest.raises(ValueError, match=match):
            parse_head_spec(bad)


def test_lowest_heads_ranks_globally_and_keeps_a_head_per_layer():
    scores = [torch.tensor([0.9, 0.1, 0.3]), torch.tensor([0.05, 0.04])]
    assert lowest_heads(scores, 0.4) == {0: [1], 1: [1]}
    # 0.8 of 5 = 4 heads, but each layer keeps its best: only 3 can go.
    assert lowest_heads(scores, 0.8) == {0: [1, 2], 1: [1]}
    assert lowest_heads(scores, 0.8, allow_empty_layer=True) == {0: [1, 2], 1: [0, 1]}
    assert lowest_heads(scores, 0.0) == {}
    model = prune_heads(build(num_layers=2, num_heads=4, d_model=32), {0: [0], 1: [1, 2]})
    # positions -> original ids: layer 0 holds [1, 2, 3], layer 1 holds [0, 3]
    assert lowest_heads(scores, 0.4, model=model) == {0: [2], 1: [3]}
    with pytest.raises(ValueError, match="fraction"):
        lowest_heads(scores, 1.5)


def test_pruned_checkpoint_saves_reloads_and_resumes_training(tmp_path):
    from multihead.train import TrainConfig, train

    cfg = DecoderConfig(vocab_size=16, max_seq_len=16, d_model=32, num_layers=2, num_heads=4)
    run = TrainConfig(
        task="copy", steps=2, batch_size=4, seq_len=15, warmup_steps=1, eval_every=2,
        eval_tokens=128, log_every=1,
    )  # fmt: skip
    train(cfg, run, out=tmp_path / "full", progress=False)
    model = prune_heads(DecoderLM.from_checkpoint(tmp_path / "full"), {0: [1], 1: [0, 3]})
    save_pruned(model, tmp_path / "pruned", train_config=run, step=2)
    back = DecoderLM.from_checkpoint(tmp_path / "pruned")
    assert back.config == model.config
    x = torch.randint(0, 16, (2, 10))
    torch.testing.assert_close(back(x), model.eval()(x))
    more = TrainConfig(**{**run.to_dict(), "steps": 4})
    result = train(
        back.config, more, out=tmp_path / "pruned", resume=tmp_path / "pruned", progress=False
    )
    assert len(result["losses"]) == 2 and all(map(lambda v: v == v, result["losses"]))
    assert DecoderLM.from_checkpoint(tmp_path / "pruned").config.layer_heads == (
        (0, 2, 3),
        (1, 2),
    )


def test_importance_by_original_id_fills_the_head_report():
    model = prune_heads(build(num_layers=2), {0: [0, 2]})
    data = [torch.randint(0, 40, (2, 8))]
    scores = gradient_importance(model, data, progress=False)
    by_head = importance_by_head(model, scores)
    assert sorted(by_head) == [(0, 1), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)]
    assert by_head[(0, 3)] == float(scores[0][1])
    report = analyze(model, data, progress=False).with_importance(by_head)
    assert {(h.layer, h.head): h.importance for h in report.heads} == by_head
    with pytest.raises(ValueError, match="heads per layer"):
        importance_by_head(model, scores[:1])
