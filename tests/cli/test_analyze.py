"""``multihead analyze`` on a small Llama-layout checkpoint (no tokenizer: ids as text)."""

import json

import pytest

from multihead.cli import main
from multihead.convert import to_pretrained
from multihead.models import DecoderConfig, DecoderLM


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = DecoderConfig(
        num_layers=2,
        d_model=32,
        num_heads=4,
        num_kv_heads=2,
        vocab_size=50,
        max_seq_len=64,
        norm="rmsnorm",
        activation="swiglu",
        position="rope",
        bias=False,
    )
    return str(to_pretrained(DecoderLM(cfg), tmp_path_factory.mktemp("ckpt") / "tiny"))


def test_task_induction_writes_every_format(checkpoint, tmp_path, capsys):
    out = {k: tmp_path / f"r.{k}" for k in ("json", "csv", "md")}
    argv = [
        "analyze",
        "--checkpoint",
        checkpoint,
        "--task",
        "induction",
        "--batches",
        "2",
        "--batch-size",
        "2",
        "--seq-len",
        "16",
        "--no-progress",
        "--json",
        str(out["json"]),
        "--csv",
        str(out["csv"]),
        "--markdown",
        str(out["md"]),
    ]
    assert main(argv) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["layer", "head", "kv", "roles", "top", "scores", "importance"]
    assert len(table) == 1 + 8
    report = json.loads(out["json"].read_text())
    assert set(report) == {"model", "heads"} and len(report["heads"]) == 8
    assert report["model"]["data"] == "induction"
    assert {"induction", "previous_token", "entropy"} <= set(report["heads"][0]["scores"])
    assert out["csv"].read_text().startswith("layer,head,kv_head,roles,importance,")
    assert out["md"].read_text().startswith("| layer | head |")


def test_text_and_data_as_ids_and_weights_mode(checkpoint, tmp_path, capsys):
    data = tmp_path / "ids.txt"
    data.write_text("1 2 3 4 5 6 7 8\n1 2 3 4 5 6 7 8\n")
    argv = [
        "analyze",
        "--checkpoint",
        checkpoint,
        "--data",
        str(data),
        "--seq-len",
        "8",
        "--mode",
        "weights",
        "--layers",
        "1",
        "--redundancy",
        "0.01",
        "--no-progress",
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:5]] == ["1"] * 4
    assert lines[5].startswith("near-duplicate heads (layer, head): 1:0 1:1 1:2 1:3")
    assert main(["analyze", "--checkpoint", checkpoint, "--text", "3 4 5", "--no-progress"]) == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--text", "a b"], "space-separated token ids"),
        (["--text", "1 99"], "outside the vocabulary [0, 50)"),
        (["--task", "induction", "--layers", "7"], "layer 7 is out of range"),
        (["--task", "induction", "--batches", "0"], "--batches must be a positive integer"),
        (["--task", "induction", "--redundancy", "-1"], "redundancy must be"),
    ],
)
def test_bad_input(checkpoint, capsys, flags, message):
    assert main(["analyze", "--checkpoint", checkpoint, "--no-progress", *flags]) == 2
    assert message in capsys.readouterr().err


def test_importance_equals_the_librarys_gradient_importance(checkpoint, tmp_path, capsys):
    import torch

    from multihead.analysis import gradient_importance
    from multihead.convert import load_model
    from multihead.data import SyntheticTask

    out = tmp_path / "r.json"
    argv = ["analyze", "--checkpoint", checkpoint, "--task", "induction", "--batches", "2"]
    argv += ["--batch-size", "2", "--seq-len", "16", "--no-progress", "--importance"]
    assert main([*argv, "--json", str(out)]) == 0
    heads = json.loads(out.read_text())["heads"]
    model, _ = load_model(checkpoint)
    task = SyntheticTask("induction", vocab_size=50, seq_len=16)
    g = torch.Generator().manual_seed(0)
    batches = [task.batch("test", batch_size=2, generator=g)[0] for _ in range(2)]
    expected = gradient_importance(model, batches, progress=False)
    got = [[h["importance"] for h in heads if h["layer"] == layer] for layer in range(2)]
    torch.testing.assert_close(
        torch.tensor(got, dtype=torch.float64), torch.stack(expected).double(), rtol=1e-5, atol=1e-7
    )
    assert all(v is not None for row in got for v in row)
