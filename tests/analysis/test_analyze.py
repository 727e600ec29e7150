"""analyze() on a module whose heads are built by hand: each head's pattern is forced by an
additive mask (projections zeroed), so its roles are known."""

import pytest
import torch
from torch import nn

from multihead import MultiHeadAttention
from multihead.analysis import HeadReport, analyze, head_ids
from multihead.models import DecoderConfig, DecoderLM

V, N = 30, 8  # vocabulary; each sequence is N distinct random tokens repeated twice


class HandBuilt(nn.Module):
    """Five heads: previous token, sink, offset 3, uniform (causal), induction."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, 20)
        self.attn = MultiHeadAttention(20, 5)
        with torch.no_grad():
            self.attn.in_proj.weight.zero_()  # every score is 0: the mask decides

    def forward(self, tokens):
        b, t = tokens.shape
        q = torch.arange(t).view(-1, 1)
        k = torch.arange(t).view(1, -1)
        want = torch.zeros(b, 5, t, t, dtype=torch.bool)
        want[:, 0] = (k == q - 1) | ((q == 0) & (k == 0))
        want[:, 1] = k == 0
        want[:, 2] = (k == q - 3) | ((q < 3) & (k == 0))
        want[:, 3] = True
        prev = torch.cat([torch.full((b, 1), -1), tokens[:, :-1]], dim=1)  # token before each key
        ind = (prev[:, None, :] == tokens[:, :, None]) & (k <= q)
        ind = ind | (~ind.any(-1, keepdim=True) & (k == 0))
        want[:, 4] = ind
        bias = torch.zeros(b, 5, t, t).masked_fill(~want, -1e4)
        out, _ = self.attn(self.emb(tokens), mask=bias, is_causal=True)
        return out


def repeated(batches=3, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batches):
        half = torch.stack([torch.randperm(V, generator=g)[:N] for _ in range(b)])
        out.append(torch.cat([half, half], dim=1))  # (b, 2N)
    return out


EXPECTED = [["previous_token"], ["sink"], ["positional"], ["broad"], ["induction", "sink"]]


@pytest.mark.parametrize("mode", ["summary", "weights"])
def test_hand_built_heads_get_their_roles(mode):
    model = HandBuilt()
    report = analyze(model, repeated(), mode=mode, progress=False, block=5)
    assert [h.head for h in report.heads] == [0, 1, 2, 3, 4]
    roles = [[r for r in h.roles if r != "rare_token"] for h in report.heads]
    assert roles == EXPECTED
    s = [h.scores for h in report.heads]
    assert s[0]["previous_token"] == pytest.approx(15 / 16)
    assert s[2]["positional_offset"] == 3.0 and s[2]["positional"] == pytest.approx(13 / 16)
    assert s[4]["induction"] == pytest.approx(8 / 16)
    assert report.model["mode"] == mode and report.model["batches"] == 3


def test_exclude_first_and_tuples_of_x_y():
    model = HandBuilt()
    data = [(x, x) for x in repeated()]
    report = analyze(model, data, progress=False, exclude_first=True)
    assert report.heads[4].scores["induction"] == pytest.approx(1.0)


def test_summary_and_weights_reports_agree_and_redundancy():
    model = HandBuilt()
    a = analyze(model, repeated(), mode="summary", progress=False, block=3)
    b = analyze(model, repeated(), mode="weights", progress=False, redundancy=0.05)
    for ha, hb in zip(a.heads, b.heads):
        assert ha.roles == hb.roles
        assert ha.scores.keys() == hb.scores.keys()
        for name in ha.scores:
            assert ha.scores[name] == pytest.approx(hb.scores[name], abs=1e-5, nan_ok=True), name
    # Heads 1 (sink) and 4 (induction, sink on the first half) share half their rows only.
    assert b.model["redundant_clusters"] == []
    # They agree on the 8 first-half rows and are disjoint on the other 8: JSD = ln(2) / 2.
    c = analyze(model, repeated(), mode="weights", progress=False, redundancy=0.35)
    assert c.model["redundant_clusters"] == [[[0, 1], [0, 4]]]
    # Summary mode sums the same divergences block by block, within each layer.
    d = analyze(model, repeated(), mode="summary", block=3, progress=False, redundancy=0.35)
    assert d.model["redundant_clusters"] == [[[0, 1], [0, 4]]]
    assert d.model["redundancy"] == {"threshold": 0.35, "scope": "layer"}


def test_original_head_ids_of_a_pruned_model():
    cfg = DecoderConfig(
        num_layers=2,
        d_model=32,
        num_heads=4,
        num_kv_heads=2,
        vocab_size=V,
        layer_heads=[[1, 3], [0, 1, 2, 3]],
    )
    model = DecoderLM(cfg)
    assert head_ids(model, 0) == ([1, 3], [0, 1])
    report = analyze(model, repeated(1), progress=False)
    assert [(h.layer, h.head, h.kv_head) for h in report.heads[:3]] == [
        (0, 1, 0),
        (0, 3, 1),
        (1, 0, 0),
    ]
    again = HeadReport.from_json(report.to_json())
    assert again == report


def test_bad_input():
    model = HandBuilt()
    with pytest.raises(ValueError, match="yielded no batch"):
        analyze(model, iter([]), progress=False)
    with pytest.raises(ValueError, match="no MultiHeadAttention"):
        analyze(nn.Linear(2, 2), repeated(), progress=False)
    with pytest.raises(ValueError, match="layer 1 is out of range"):
        analyze(model, repeated(), layers=[1], progress=False)
    with pytest.raises(ValueError, match="head 7 of layer 0 is out of range"):
        analyze(model, repeated(), heads=[7], progress=False)
    with pytest.raises(ValueError, match="redundancy must be"):
        analyze(model, repeated(), redundancy=-0.1, progress=False)
    with pytest.raises(TypeError, match="a batch must be"):
        analyze(model, ["text"], progress=False)


def test_progress_bar_and_training_flag_restored(capsys):
    model = HandBuilt().train()
    analyze(model, repeated(1), progress=True)
    assert model.training
    assert "analyze" in capsys.readouterr().err
