"""record(): maps equal need_weights, summary equals weights, GQA, padding, KV cache, errors."""

import pytest
import torch
from torch import nn

from multihead import MultiHeadAttention
from multihead.analysis import record
from multihead.models import DecoderConfig, DecoderLM, Encoder, EncoderConfig

OPTS = dict(special_tokens=[3], frequencies=torch.arange(1.0, 41.0).flip(0))


def enter(model, **kw):
    with record(model, **kw):
        pass


def decoder(**kw):
    cfg = dict(num_layers=2, d_model=32, num_heads=4, vocab_size=40, max_seq_len=64)
    return DecoderLM(DecoderConfig(**(cfg | kw))).eval()


def assert_same_scores(a, b, layers, atol=1e-5):
    for i in layers:
        sa, sb = a.summary[i].scores(), b.summary[i].scores()
        assert sa.keys() == sb.keys()
        for name in sa:
            torch.testing.assert_close(
                sa[name], sb[name], atol=atol, rtol=1e-5, equal_nan=True, msg=f"layer {i} {name}"
            )


def test_weights_equal_need_weights_and_output_is_unchanged():
    model = decoder(num_kv_heads=2)
    tokens = torch.randint(0, 40, (2, 9))
    plain = model(tokens)
    seen = []
    handles = [b.attn.add_observer(lambda p: seen.append(p.weights())) for b in model.blocks]
    model(tokens)
    for h in handles:
        h.remove()
    with record(model) as rec:
        out = model(tokens)
    torch.testing.assert_close(out, plain)
    for i in range(2):
        assert rec.weights[i].shape == (2, 4, 9, 9)  # one map per query head under GQA
        torch.testing.assert_close(rec.weights[i], seen[i])
    assert not any(b.attn._observers for b in model.blocks)


@pytest.mark.parametrize("kv", [4, 2, 1])
def test_summary_equals_weights_over_blocks_and_batches(kv):
    model = decoder(num_kv_heads=kv)
    tokens = torch.randint(0, 40, (3, 21))
    with torch.no_grad(), record(model, summarize=True, **OPTS) as whole:
        model(tokens)
    with torch.no_grad(), record(model, mode="summary", block=4, **OPTS) as parts:
        model(tokens[:2])
        model(tokens[2:])
    assert_same_scores(whole, parts, [0, 1])
    assert parts.maps == [[], []]


def test_layers_and_heads_selection():
    model = decoder(num_layers=3)
    tokens = torch.randint(0, 40, (1, 7))
    with record(model, summarize=True) as full:
        model(tokens)
    with record(model, layers=[-1, 0], heads={-1: [3, 1]}, summarize=True) as rec:
        model(tokens)
        model(tokens)
    assert rec.layers == [0, 2] and rec.weights[1] is None
    assert rec.weights[2].shape == (2, 2, 7, 7)  # two forwards along the batch
    torch.testing.assert_close(rec.weights[2][:1], full.weights[2][:, [3, 1]])
    torch.testing.assert_close(
        rec.summary[2].scores()["entropy"], full.summary[2].scores()["entropy"][[3, 1]]
    )
    with pytest.raises(ValueError, match="head 4 of layer 0 is out of range"):
        enter(model, heads=[4])
    with pytest.raises(ValueError, match="layer 5 is out of range"):
        enter(model, layers=[5])
    with pytest.raises(ValueError, match="heads names layers \\[1\\]"):
        enter(model, layers=[0], heads={1: [0]})


def test_padded_queries_do_not_count():
    enc = Encoder(EncoderConfig(num_layers=1, d_model=32, num_heads=2, vocab_size=40)).eval()
    tokens = torch.randint(0, 40, (2, 8))
    lengths = torch.tensor([8, 5])
    with torch.no_grad(), record(enc, mode="summary", block=3, **OPTS) as padded:
        enc(tokens, lengths=lengths)
    with torch.no_grad(), record(enc, mode="summary", **OPTS) as alone:
        enc(tokens[:1])
        enc(tokens[1:, :5])
    assert_same_scores(padded, alone, [0])
    with torch.no_grad(), record(enc, summarize=True, **OPTS) as weights:
        enc(tokens, padding_mask=torch.arange(8) < lengths.view(-1, 1))
    assert_same_scores(weights, alone, [0])


def test_kv_cache_decoding_records_the_new_rows():
    model = decoder(num_kv_heads=2)
    tokens = torch.randint(0, 40, (2, 12))
    with torch.no_grad(), record(model, mode="summary", **OPTS) as full:
        model(tokens)
    with torch.no_grad(), record(model, mode="summary", block=2, **OPTS) as dec:
        cache = model.new_cache(2, 12)
        model(tokens[:, :5], cache=cache)
        for t in range(5, 12):
            model(tokens[:, t : t + 1], cache=cache)
    assert_same_scores(full, dec, [0, 1])
    with torch.no_grad(), record(model) as rec:
        cache = model.new_cache(2, 12)
        model(tokens[:, :5], cache=cache)
        model(tokens[:, 5:6], cache=cache)
    assert [m.shape[2] for m in rec.maps[0]] == [5, 1]
    with pytest.raises(ValueError, match="read rec.maps"):
        rec.weights


def test_under_grad_and_no_grad():
    model = decoder()
    tokens = torch.randint(0, 40, (1, 6))
    with record(model) as rec:
        model(tokens).sum().backward()
    assert not rec.weights[0].requires_grad


def test_weights_refuse_maps_that_would_not_fit():
    model = decoder()
    tokens = torch.randint(0, 40, (1, 32))
    need = 2 * 4 * 32 * 32 * 4  # two layers of (1, 4, 32, 32) float32
    too_small = record(model, max_bytes=need - 1)
    with pytest.raises(MemoryError, match=r"about 0\.00 GiB .*use mode='summary'"), too_small:
        model(tokens)
    assert not any(b.attn._observers for b in model.blocks)
    with record(model, max_bytes=need) as rec:
        model(tokens)
    assert rec.stored_bytes == need


def test_observers_removed_on_exceptions_and_bad_arguments():
    model = decoder()
    with pytest.raises(RuntimeError, match="boom"), record(model, mode="summary"):
        raise RuntimeError("boom")
    assert not any(b.attn._observers for b in model.blocks)
    assert not model._forward_pre_hooks
    with pytest.raises(ValueError, match="mode must be one of"):
        enter(model, mode="all")
    with pytest.raises(ValueError, match="no MultiHeadAttention"):
        enter(nn.Linear(2, 2))


def test_bare_module_and_cross_attention():
    mha = MultiHeadAttention(16, 2)
    x, mem = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    with record(mha, mode="summary", block=2) as rec:
        mha(x, mem)
    with record(mha, summarize=True) as ref:
        _, w = mha(x, mem, need_weights=True)
    torch.testing.assert_close(ref.weights[0], w)
    assert_same_scores(rec, ref, [0])
    assert torch.isnan(rec.summary[0].scores()["induction"]).all()  # no tokens to compare


def test_ring_cache_with_a_window_matches_the_windowed_forward():
    model = decoder(window=4)
    tokens = torch.randint(0, 40, (1, 11))
    with torch.no_grad(), record(model, mode="summary", **OPTS) as full:
        model(tokens)
    with torch.no_grad(), record(model, mode="summary", **OPTS) as dec:
        cache = model.new_cache(1, 11)
        model(tokens[:, :3], cache=cache)
        for t in range(3, 11):
            model(tokens[:, t : t + 1], cache=cache)
    assert_same_scores(full, dec, [0, 1])


def test_summary_matches_the_score_functions_on_the_recorded_maps():
    from multihead.analysis import scores as S
    from multihead.masks import key_padding

    mha = MultiHeadAttention(32, 4, num_kv_heads=2)
    x = torch.randn(2, 9, 32)
    mask = key_padding(lengths=torch.tensor([9, 6]))
    hm = torch.tensor([1.0, 0.5, 1.0, 0.0])
    with torch.no_grad(), record(mha, mode="summary", block=4) as rec:
        mha(x, mask=mask, is_causal=True, head_mask=hm)
    with torch.no_grad(), record(mha) as maps:
        mha(x, mask=mask, is_causal=True, head_mask=hm)
    w = maps.weights[0]
    got = rec.summary[0].scores()
    qmask = torch.arange(9) < torch.tensor([[9], [6]])
    allowed = (torch.arange(9).view(1, -1) <= torch.arange(9).view(-1, 1)) & qmask[:, None, :]
    allowed = allowed[:, None]  # (B, 1, Tq, Tk)
    for name, fn in [
        ("entropy", S.entropy),
        ("confidence", S.confidence),
        ("mean_distance", S.mean_distance),
        ("sink", S.sink_score),
    ]:
        torch.testing.assert_close(
            got[name], fn(w, query_mask=qmask), atol=1e-5, rtol=1e-5, equal_nan=True, msg=name
        )
    ne = S.normalized_entropy(w, query_mask=qmask, allowed=allowed)
    torch.testing.assert_close(got["normalized_entropy"], ne, atol=1e-5, rtol=1e-5, equal_nan=True)
    assert torch.isnan(got["entropy"][3])  # head masked to 0: no row counts


def test_summary_mean_distance_and_confidence_stay_exact_at_long_lengths():
    """The summary takes the distance as a matrix-vector product and the largest weight as
    1 / z from the softmax; at T=2048 in float32 both must match the score functions on
    float64 maps of the same module (relative 1e-5), sharp and broad heads alike."""
    from multihead.analysis import scores as S

    torch.manual_seed(0)
    t, e = 2048, 32
    mha = MultiHeadAttention(e, 2, bias=False)
    with torch.no_grad():
        mha.in_proj.weight[:16].mul_(4.0)  # head 0's queries: sharp rows (confidence ~1)
    x = torch.randn(1, t, e)
    with torch.no_grad(), record(mha, mode="summary", block=64) as rec:
        mha(x, is_causal=True)
    m64 = MultiHeadAttention(e, 2, bias=False).double()
    m64.load_state_dict({n: p.double() for n, p in mha.state_dict().items()})
    with torch.no_grad(), record(m64) as maps:
        m64(x.double(), is_causal=True)
    w = maps.weights[0]  # (1, 2, T, T) float64
    got = rec.summary[0].scores()
    for name, fn in [("mean_distance", S.mean_distance), ("confidence", S.confidence)]:
        torch.testing.assert_close(got[name], fn(w), rtol=1e-5, atol=0, msg=name)
