"""``multihead agent train`` / ``eval`` end to end on a tiny run."""

from __future__ import annotations

import json

import pytest
import torch

from multihead import cli
from multihead.checkpoint import load_checkpoint
from multihead_apps.agent.policy import TradingPolicy


@pytest.fixture
def agent_only(monkeypatch):
    # Run the real entry point with only this subcommand registered (the entry point that
    # pyproject.toml declares; tests/apps/conftest.py), so the test does not depend on other
    # subcommands' modules; restore the thread count the CLI sets.
    monkeypatch.setattr(cli, "BUILTIN", ())
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_agent_is_a_registered_subcommand():
    assert "agent" in cli.commands()


def test_train_then_eval(tmp_path, capsys, agent_only):
    out = tmp_path / "agent"
    code = cli.main(
        ["agent", "train", "--out", str(out), "--iterations", "3", "--envs", "2",
         "--horizon", "24", "--hidden", "16", "--save-every", "2"]
    )  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert "trained 3 iterations x 2 episodes" in captured.out
    assert "agent train" in captured.err  # the progress bar
    ckpt = load_checkpoint(out, kind="trading_agent")
    assert ckpt.step == 3 and ckpt.config["env"]["horizon"] == 24
    assert ckpt.config["trainer"]["hidden"] == [16]
    assert len(ckpt.meta["history"]) == 3
    assert set(ckpt.training_state()) == {"optimizer", "rng"}
    assert TradingPolicy.load(out).env_config.horizon == 24

    report_path = tmp_path / "report.json"
    code = cli.main(
        ["agent", "eval", "--checkpoint", str(out), "--episodes", "4", "--json", str(report_path)]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "| agent - buy_and_hold |" in captured.out
    assert "| agent - random |" in captured.out
    assert "agent eval" in captured.err
    report = json.loads(report_path.read_text())
    assert report["episodes"] == 4 and set(report["returns"]) == {
        "agent", "random", "buy_and_hold"
    }  # fmt: skip
    assert report["actions"]["side"]["all"]["steps"] == 4 * 24


def test_bad_input_gives_one_line_errors(tmp_path, capsys, agent_only):
    code = cli.main(["agent", "eval", "--checkpoint", str(tmp_path / "missing")])
    assert code == 2
    assert "multihead agent: error: checkpoint directory" in capsys.readouterr().err
    code = cli.main(["agent", "train", "--out", str(tmp_path / "x"), "--iterations", "0"])
    assert code == 2
    assert "iterations must be an integer >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["agent", "train", "--out", str(tmp_path), "--hidden", "a,b"])
    assert "--hidden must be comma-separated" in capsys.readouterr().err
