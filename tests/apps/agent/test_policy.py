"""The 3-head trading policy, REINFORCE and the evaluation harness."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multihead.checkpoint import load_checkpoint
from multihead.multitask import Binned, Classification, MultiTaskNetwork
from multihead_apps.agent.env import LONG, EnvConfig, TradingEnv
from multihead_apps.agent.evaluate import (
    BuyAndHoldActor,
    RandomActor,
    evaluate,
    format_report,
    play,
)
from multihead_apps.agent.policy import ACTION_HEADS, TradingPolicy
from multihead_apps.agent.reinforce import (
    EVAL_SEED_START,
    ReinforceConfig,
    discounted_returns,
    rollout,
    train,
    train_seeds,
)


def small_policy(cfg: EnvConfig, seed: int = 0) -> TradingPolicy:
    torch.manual_seed(seed)
    return TradingPolicy(env_config=cfg, hidden=(16,))


def test_policy_is_a_multitask_network_whose_grids_are_the_envs():
    cfg = EnvConfig(leverage_bins=7, risk_bins=5, leverage_range=(0.5, 2.0))
    policy = small_policy(cfg)
    assert isinstance(policy.network, MultiTaskNetwork)
    specs = policy.network.specs
    assert specs["side"] == Classification(2)
    assert isinstance(specs["leverage"], Binned) and isinstance(specs["risk"], Binned)
    np.testing.assert_allclose(
        specs["leverage"].values(dtype=torch.float64).numpy(), cfg.leverage_values()
    )
    np.testing.assert_allclose(specs["risk"].values(dtype=torch.float64).numpy(), cfg.risk_values())
    assert TradingEnv(cfg).action_space.nvec.tolist() == [2, 7, 5]


def test_log_prob_is_the_sum_of_independent_head_log_probs():
    policy = small_policy(EnvConfig())
    obs = torch.randn(6, EnvConfig().obs_dim)
    out = policy(obs)
    actions = torch.stack([torch.randint(0, n, (6,)) for n in (2, 100, 100)], dim=1)  # (B, 3)
    logp, entropy = policy.log_prob(out, actions)
    expected = sum(
        torch.distributions.Categorical(logits=out[h]).log_prob(actions[:, i])
        for i, h in enumerate(ACTION_HEADS)
    )
    torch.testing.assert_close(logp, expected)
    for h in ACTION_HEADS:
        reference = torch.distributions.Categorical(logits=out[h]).entropy()
        torch.testing.assert_close(entropy[h], reference)


def test_act_greedy_is_the_mode_and_sampling_follows_the_probabilities():
    policy = small_policy(EnvConfig())
    obs = torch.randn(1, EnvConfig().obs_dim)
    out = policy(obs)
    greedy = policy.act(obs, greedy=True).actions[0].tolist()
    assert greedy == [int(out[h][0].argmax()) for h in ACTION_HEADS]
    p_long = torch.softmax(out["side"][0], -1)[LONG].item()
    g = torch.Generator().manual_seed(0)
    draws = policy.act(obs.expand(4000, -1), generator=g).actions
    # Binomial standard error at n = 4000 is below 0.008; allow 4 of them.
    assert draws[:, 0].float().mean().item() == pytest.approx(p_long, abs=0.032)


def test_discounted_returns_by_hand():
    rewards = torch.tensor([[1.0, 2.0], [0.5, -1.0], [2.0, 4.0]])
    alive = torch.tensor([[True, True], [True, True], [True, False]])
    g = discounted_returns(rewards, alive, 0.5)
    # Episode 0: G2 = 2, G1 = 0.5 + 1, G0 = 1 + 0.75; episode 1 ended after t = 1.
    torch.testing.assert_close(g, torch.tensor([[1.75, 1.5], [1.5, -1.0], [2.0, 0.0]]))


def test_train_seeds_are_distinct_and_below_the_held_out_range():
    cfg = ReinforceConfig(num_envs=4, seed=3)
    seeds = [s for it in range(50) for s in train_seeds(cfg, it)]
    assert len(set(seeds)) == len(seeds)
    assert max(seeds) < EVAL_SEED_START


def test_rollout_masks_steps_after_an_early_end():
    cfg = EnvConfig(horizon=400, vol=(0.08, 0.08, 0.08), drift=(-0.02, -0.02, -0.02))
    policy = small_policy(cfg)
    envs = [TradingEnv(cfg) for _ in range(2)]
    batch = rollout(policy, envs, [0, 1], generator=torch.Generator().manual_seed(0))
    lengths = batch.alive.sum(0)
    assert (lengths < 400).any()  # ruin ended an episode early
    for i in range(2):
        assert batch.alive[: lengths[i], i].all() and not batch.alive[lengths[i] :, i].any()
        assert (batch.rewards[lengths[i] :, i] == 0).all()


def test_reinforce_learns_to_go_long_in_a_bull_only_market():
    # One regime with a strong up-drift: the best side is always long.
    env_cfg = EnvConfig(
        horizon=32, regime_probs=(1.0, 0.0, 0.0), drift=(0.004, 0.0, 0.0), vol=(0.004, 0.01, 0.01)
    )
    cfg = ReinforceConfig(iterations=40, num_envs=8, hidden=(16,), lr=0.01, seed=1)
    policy = small_policy(env_cfg, seed=1)
    obs = torch.from_numpy(
        np.stack([TradingEnv(env_cfg).reset(seed=EVAL_SEED_START + i)[0] for i in range(32)])
    )

    def p_long():
        with torch.no_grad():
            return torch.softmax(policy(obs)["side"], -1)[:, LONG].mean().item()

    before = p_long()
    result = train(cfg, env_config=env_cfg, policy=policy, progress=False)
    assert 0.35 < before < 0.65
    assert p_long() > 0.85
    assert len(result.history) == 40
    first = np.mean([h["mean_return"] for h in result.history[:5]])
    last = np.mean([h["mean_return"] for h in result.history[-5:]])
    assert last > first


def test_policy_save_load_round_trip(tmp_path):
    cfg = EnvConfig(horizon=16, leverage_bins=10)
    policy = small_policy(cfg)
    policy.save(tmp_path, step=5, trainer={"lr": 0.1}, meta={"x": 1})
    loaded = TradingPolicy.load(tmp_path)
    assert loaded.env_config == cfg
    obs = torch.randn(3, cfg.obs_dim)
    a, b = policy(obs), loaded(obs)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    ckpt = load_checkpoint(tmp_path, kind="trading_agent")
    assert ckpt.step == 5 and ckpt.config["trainer"] == {"lr": 0.1}
    with pytest.raises(ValueError, match="holds a 'trading_agent' but a 'multitask'"):
        MultiTaskNetwork.load(tmp_path)


def test_baselines_behave_as_defined():
    cfg = EnvConfig(horizon=20)
    seeds = [EVAL_SEED_START + i for i in range(3)]
    bh = play(BuyAndHoldActor(cfg), cfg, seeds)
    for k, s in enumerate(seeds):
        env = TradingEnv(cfg)
        env.reset(seed=s)
        r = env.episode_log_returns()
        # Long 1x all along: the log price change, less one entry cost on the first step.
        expected = np.log(np.exp(r[0]) - cfg.cost) + r[1:].sum()
        assert bh["return"][k] == pytest.approx(expected, rel=1e-10)
    assert (bh["actions"][:, :, 0] == LONG).all()
    rnd1 = play(RandomActor(cfg), cfg, seeds)
    rnd2 = play(RandomActor(cfg), cfg, seeds)
    np.testing.assert_array_equal(rnd1["actions"], rnd2["actions"])  # seeded
    counts = np.bincount(rnd1["actions"][:, :, 0].ravel(), minlength=2)
    assert counts.min() > 15  # both sides are drawn


def test_evaluate_reports_paired_differences_and_action_distributions():
    cfg = EnvConfig(horizon=24)
    policy = small_policy(cfg)
    report = evaluate(policy, env_config=cfg, episodes=6, progress=False)
    returns = report["returns"]
    vs = report["vs"]
    assert vs["random"]["mean"] == pytest.approx(
        returns["agent"]["mean"] - returns["random"]["mean"]
    )
    assert vs["buy_and_hold"]["low"] <= vs["buy_and_hold"]["mean"] <= vs["buy_and_hold"]["high"]
    acts = report["actions"]
    assert set(acts) == set(ACTION_HEADS)
    assert acts["side"]["all"]["steps"] == 6 * 24
    assert 0.02 <= acts["leverage"]["all"]["q10"] <= acts["leverage"]["all"]["q90"] <= 2.0
    text = format_report(report)
    assert "agent - buy_and_hold" in text and "| all |" in text
    with pytest.raises(ValueError, match="episodes must be at least 2"):
        evaluate(policy, env_config=cfg, episodes=1, progress=False)


@pytest.mark.parametrize("module", ["env", "policy", "reinforce", "evaluate"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"multihead_apps.agent.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        ({"iterations": 0}, ValueError, "iterations must be an integer >= 1, got 0"),
        ({"num_envs": 2.0}, TypeError, r"num_envs must be an integer >= 1, got 2.0 \(float\)"),
        ({"gamma": 1.5}, ValueError, r"gamma must be a finite number in \[0, 1\], got 1.5"),
        ({"lr": 0.0}, ValueError, "lr must be a finite number > 0, got 0.0"),
        ({"lr": "fast"}, TypeError, "lr must be a finite number > 0, got 'fast'"),
        ({"entropy_coef": -0.1}, ValueError, "entropy_coef must be a finite number >= 0"),
        ({"hidden": (16, 0)}, ValueError, r"hidden\[1\] must be an integer >= 1, got 0"),
        ({"hidden": 16}, TypeError, "hidden must be a tuple of layer widths, got int"),
        ({"seed": True}, TypeError, r"seed must be an integer >= 0, got True \(bool\)"),
    ],
)
def test_reinforce_config_errors_follow_the_dialect(kw, error, message):
    with pytest.raises(error, match=message):
        ReinforceConfig(**kw)
