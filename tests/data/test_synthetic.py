"""Synthetic tasks: the scored targets follow each task's algorithm."""

import pytest
import torch

from multihead.data import IGNORE, SyntheticTask


def batch(name, t=11, v=12):
    task = SyntheticTask(name, vocab_size=v, seq_len=t)
    return task, *task.batch("train", batch_size=8, generator=torch.Generator().manual_seed(0))


def test_induction_second_copy_is_scored():
    _, x, y = batch("induction", t=12)
    n = 7  # (12 + 1) // 2 + 1
    assert torch.equal(x[:, n:], x[:, : 12 - n])  # the sequence repeats with period n
    assert (y[:, :n] == IGNORE).all() and (y[:, n:] != IGNORE).all()
    assert torch.equal(y[:, n:-1], x[:, n + 1 :])


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


@pytest.mark.parametrize("name", ["induction", "copy", "reverse"])
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
