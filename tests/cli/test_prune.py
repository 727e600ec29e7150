"""``multihead prune``: a pruned checkpoint that reloads, reports and resumes."""

import pytest
import torch

from multihead.cli import main
from multihead.models import DecoderConfig, DecoderLM
from multihead.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = DecoderConfig(vocab_size=16, max_seq_len=16, d_model=32, num_layers=2, num_heads=4,
                        num_kv_heads=2)  # fmt: skip
    tc = TrainConfig(task="copy", steps=3, batch_size=4, seq_len=15, warmup_steps=1,
                     eval_every=3, eval_tokens=128, log_every=1)  # fmt: skip
    train(cfg, tc, out=out, progress=False)
    return out


def test_named_heads_are_removed_and_the_checkpoint_resumes(run_dir, tmp_path, capsys):
    out = tmp_path / "pruned"
    argv = ["prune", "--checkpoint", str(run_dir), "--heads", "0:1,3;1:0", "--out", str(out)]
    assert main([*argv, "--eval-tokens", "256", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "removed 3 of 8 heads (0:1,3; 1:0)" in text
    assert "heads per layer: [4, 4] -> [2, 3]" in text
    assert "loss (copy validation, nats/token): " in text and "FLOPs predict" in text
    model = DecoderLM.from_checkpoint(out)
    assert model.config.layer_heads == ((0, 2), (1, 2, 3))
    full = DecoderLM.from_checkpoint(run_dir)
    x = torch.randint(0, 16, (2, 9))
    mask = torch.tensor([[1.0, 0, 1, 0], [0, 1, 1, 1]])
    torch.testing.assert_close(model(x), full(x, head_mask=mask), atol=1e-5, rtol=1e-5)
    resume = ["train", "--resume", str(out), "--steps", "5", "--quiet"]
    assert main(resume) == 0
    assert DecoderLM.from_checkpoint(out).config.layer_heads == ((0, 2), (1, 2, 3))


def test_a_fraction_removes_the_least_important_heads(run_dir, tmp_path, capsys):
    out = tmp_path / "half"
    argv = ["prune", "--checkpoint", str(run_dir), "--fraction", "0.5", "--out", str(out),
            "--batches", "1", "--eval-tokens", "128", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert "removed 4 of 8 heads" in capsys.readouterr().out
    assert sum(DecoderLM.from_checkpoint(out).config.layer_head_counts) == 4


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--heads", "0:0,1,2,3"], "without heads; pass allow_empty_layer=True"),
        (["--heads", "0:9"], "head 9 of layer 0 is not in the model"),
        (["--heads", "0:1,1"], "lists heads"),
        (["--fraction", "1.5"], "--fraction must be in"),
        (["--heads", "0:1", "--out", "SELF"], "is the checkpoint being pruned"),
    ],
)
def test_bad_requests_are_one_line_errors(run_dir, tmp_path, capsys, extra, message):
    argv = ["prune", "--checkpoint", str(run_dir), "--out", str(tmp_path / "x"), "--quiet"]
    extra = [str(run_dir) if a == "SELF" else a for a in extra]
    assert main([*argv, *extra, "--eval-tokens", "128"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
