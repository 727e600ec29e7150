"""Synthetic tasks: the scored targets follow each task's algorithm."""

import pytest
import torch

from multihead.data import IGNORE, TASKS, SyntheticTask
from multihead.data.synthetic import repeat_lengths


def batch(name, t=11, v=12):
    task = SyntheticTask(name, vocab_size=v, seq_len=t)
    return task, *task.batch("train", batch_size=8, generator=torch.Generator().manual_seed(0))


def test_induction_second_copy_is_scored():
    _, x, y = batch("induction", t=12)
    n = 7  # (12 + 1) // 2 + 1
    assert torch.equal(x[:, n:], x[:, : 12 - n])  # the sequence repeats with period n
    assert (y[:, :n] == IGNORE).all() and (y[:, n:] != IGNORE).all()
    assert torch.equal(y[:, n:-1], x[:, n + 1 :])


def scored_runs(y):
    """Per row, the scored positions (they must form one run)."""
    runs = []
    for row in y:
        idx = (row != IGNORE).nonzero().flatten().tolist()
        assert idx == list(range(idx[0], idx[0] + len(idx))), f"not one run: {idx}"
        runs.append(idx)
    return runs


@pytest.mark.parametrize("t", [3, 4, 9, 32, 33])
def test_random_repeat_scores_exactly_the_second_copy(t):
    """Each row repeats a segment A right after itself; only the targets inside the second
    copy (from its second token on) are scored, and each equals the token one period back."""
    task = SyntheticTask("induction_random", vocab_size=50, seq_len=t)
    x, y = task.batch("train", batch_size=64, generator=torch.Generator().manual_seed(t))
    assert x.shape == y.shape == (64, t)
    lo, hi = repeat_lengths(t)
    for row, idx in enumerate(scored_runs(y)):
        n = len(idx) + 1  # the period: n - 1 scored targets
        assert lo <= n <= hi
        first = idx[0] - n  # input position of A's first token
        assert first >= 0
        for i in idx:
            assert y[row, i] == x[row, i + 1 - n]  # the token one period back
            if i + 1 < t:
                assert y[row, i] == x[row, i + 1]
        # the input at the first scored position starts the second copy
        assert torch.equal(x[row, idx[0] : idx[-1] + 1], x[row, first : first + n - 1])


def test_random_repeat_varies_period_and_place_so_no_fixed_offset_solves_it():
    task = SyntheticTask("induction_random", vocab_size=50, seq_len=32)
    _, y = task.batch("train", batch_size=256, generator=torch.Generator().manual_seed(0))
    runs = scored_runs(y)
    periods = {len(r) + 1 for r in runs}
    starts = {r[0] for r in runs}
    assert periods == set(range(8, 17))  # every length in repeat_lengths(32)
    assert len(starts) > 10
    # The best single offset k (predict y[i] = x[i + 1 - k]) gets far from every target.
    x, y = task.batch("train", batch_size=256, generator=torch.Generator().manual_seed(1))
    scored = y != IGNORE
    best = 0.0
    for k in range(1, 33):
        hit = torch.zeros_like(scored)
        hit[:, k - 1 :] = y[:, k - 1 :] == x[:, : 33 - k]
        best = max(best, float((hit & scored).sum() / scored.sum()))
    assert best < 0.3, best


def test_random_repeat_batches_follow_the_generator():
    task = SyntheticTask("induction_random", vocab_size=20, seq_len=16)
    a = task.batch("train", batch_size=4, generator=torch.Generator().manual_seed(3))
    b = task.batch("train", batch_size=4, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("name", ["copy", "reverse"])
def test_copy_and_reverse_targets(name):
    task, x, y = batch(name)
    n = 5
    assert (x[:, n] == task.sep).all()
    scored = y[:, n : 2 * n]
    expected = x[:, :n] if name == "copy" else x[:, :n].flip(1)
    assert torch.equal(scored, expected)
    assert (y[:, :n] == IGNORE).all()


def test_bad_task_arguments():
    with pytest.raises(ValueError, match="task must be one of"):
        SyntheticTask("sort", vocab_size=10, seq_len=8)
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 3"):
        SyntheticTask("copy", vocab_size=2, seq_len=8)


@pytest.mark.parametrize("name", TASKS)
def test_every_accepted_length_has_something_to_score(name):
    """Below its minimum length a task is refused; at and above it every row scores tokens."""
    accepted = []
    for t in range(1, 14):
        try:
            task = SyntheticTask(name, vocab_size=7, seq_len=t)
        except ValueError as err:
            assert f"seq_len={t}" in str(err) and "nothing to score" in str(err)
            assert not accepted, "a shorter length was accepted but a longer one refused"
            continue
        _, y = task.batch("train", batch_size=3, generator=torch.Generator().manual_seed(t))
        assert ((y != IGNORE).sum(1) > 0).all(), f"{name} with seq_len={t} scores nothing"
        accepted.append(t)
    assert accepted and accepted[0] == SyntheticTask.min_seq_len(name)


def test_induction_needs_four_positions_and_batch_lengths_are_checked():
    with pytest.raises(ValueError, match=r"induction.*seq_len=3.*at least 4"):
        SyntheticTask("induction", vocab_size=10, seq_len=3)
    task = SyntheticTask("copy", vocab_size=10, seq_len=9)
    with pytest.raises(ValueError, match="seq_len=2"):
        task.batch("val", batch_size=2, generator=torch.Generator(), seq_len=2)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        task.batch("val", batch_size=0, generator=torch.Generator())
