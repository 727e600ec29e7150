"""Next-token scores over batches, against a direct computation."""

import math

import pytest
import torch

from multihead.data import IGNORE
from multihead.train.evaluate import Scores, eval_record, evaluating, score_batches


def test_scores_match_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    table = torch.randn(7, 7, generator=g, dtype=torch.float64)

    def forward(x):  # (b, T) -> (b, T, V): a bigram model
        return table[x].float()

    batches = []
    for _ in range(3):
        x = torch.randint(0, 7, (2, 5), generator=g)
        y = torch.randint(0, 7, (2, 5), generator=g)
        y[torch.rand(2, 5, generator=g) < 0.3] = IGNORE
        batches.append((x, y))
    s = score_batches(forward, batches)
    nll = tokens = correct = 0
    for x, y in batches:
        logp = torch.log_softmax(table[x], -1)  # (b, T, V) float64
        for b in range(2):
            for t in range(5):
                if y[b, t] != IGNORE:
                    nll -= float(logp[b, t, y[b, t]])
                    tokens += 1
                    correct += int(logp[b, t].argmax() == y[b, t])
    assert s.tokens == tokens and s.correct == correct
    assert s.nll == pytest.approx(nll, rel=1e-5)  # float32 logits vs float64
    assert s.loss == pytest.approx(nll / tokens, rel=1e-5)


def test_nothing_scored_and_records():
    x = torch.zeros(1, 3, dtype=torch.long)
    y = torch.full((1, 3), IGNORE)
    with pytest.raises(ValueError, match="scored no tokens: every target is IGNORE in 1 batch"):
        score_batches(lambda t: torch.zeros(*t.shape, 4), [(x, y)])
    with pytest.raises(ValueError, match="scored no tokens: there were no batches"):
        score_batches(lambda t: torch.zeros(*t.shape, 4), [])
    with pytest.raises(ValueError, match="no tokens were scored"):
        _ = Scores(0.0, 0, 0).loss
    with pytest.raises(ValueError, match="no tokens were scored"):
        eval_record(1, Scores(0.0, 0, 0), "copy")
    scores = Scores(nll=6 * math.log(2), tokens=6, correct=3)
    text = eval_record(10, scores, "text")
    assert text == {
        "type": "eval",
        "step": 10,
        "val_loss": pytest.approx(math.log(2)),
        "val_tokens": 6,
        "val_bpb": pytest.approx(1.0),
    }
    assert eval_record(10, scores, "copy")["val_acc"] == 0.5


def test_evaluating_restores_the_mode():
    model = torch.nn.Dropout(0.5)
    with evaluating(model):
        assert not model.training
    assert model.training
    model.eval()
    with evaluating(model):
        pass
    assert not model.training
