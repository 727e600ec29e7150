"""The trading environment: Gymnasium API, determinism, rewards by hand, stops, ruin."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from multihead_apps.agent.env import LONG, REGIMES, SHORT, EnvConfig, TradingEnv, register_env


def test_passes_gymnasium_env_checker():
    check_env(TradingEnv(EnvConfig(horizon=40)), skip_render_check=True)


def test_registered_with_gymnasium():
    register_env()
    env = gymnasium.make("multihead/Trading-v0", config=EnvConfig(horizon=8))
    obs, _ = env.reset(seed=1)
    assert obs.shape == (EnvConfig().obs_dim,)


def run(env: TradingEnv, seed: int, actions):
    obs, info = env.reset(seed=seed)
    trace = [(obs, 0.0, info)]
    for a in actions:
        obs, r, terminated, truncated, info = env.step(np.asarray(a))
        trace.append((obs, r, info))
        if terminated or truncated:
            break
    return trace


def test_seeded_and_deterministic_and_prices_ignore_actions():
    env = TradingEnv(EnvConfig(horizon=50))
    rng = np.random.default_rng(0)
    acts = [env.action_space.sample() for _ in range(50)]
    a = run(env, 7, acts)
    b = run(TradingEnv(EnvConfig(horizon=50)), 7, acts)
    for (oa, ra, ia), (ob, rb, ib) in zip(a, b):
        np.testing.assert_array_equal(oa, ob)
        assert ra == rb and ia == ib
    prices = env.episode_log_returns()
    other = [rng.integers(0, [2, 100, 100]) for _ in range(50)]
    c = run(env, 7, other)
    np.testing.assert_array_equal(env.episode_log_returns(), prices)
    assert [i["regime"] for _, _, i in a] == [i["regime"] for _, _, i in c]
    run(env, 8, acts)
    assert not np.array_equal(env.episode_log_returns(), prices)


def test_rewards_and_costs_match_hand_computation():
    cfg = EnvConfig(horizon=10, cost=0.001)
    env = TradingEnv(cfg)
    lev = cfg.leverage_values()
    one, two = int(np.argmin(abs(lev - 1.0))), len(lev) - 1
    assert lev[one] == pytest.approx(1.0) and lev[two] == pytest.approx(2.0)
    top = cfg.risk_bins - 1  # risk 1.0: never stopped
    actions = [[LONG, one, top], [SHORT, two, top], [SHORT, two, top], [LONG, 0, top]]
    trace = run(env, 3, actions)
    r = env.episode_log_returns()
    exposures = [1.0, -2.0, -2.0, lev[0]]
    prev, equity = 0.0, 1.0
    for t, e in enumerate(exposures):
        growth = 1.0 + e * math.expm1(r[t]) - 0.001 * abs(e - prev)
        assert trace[t + 1][1] == pytest.approx(math.log(growth), rel=1e-12, abs=1e-15)
        equity *= growth
        prev = e
        assert trace[t + 1][2]["exposure"] == pytest.approx(e)
    assert trace[-1][2]["equity"] == pytest.approx(equity, rel=1e-12)
    assert sum(x[1] for x in trace) == pytest.approx(math.log(equity), rel=1e-12)


def test_tight_risk_stops_out_flattens_for_cooldown_then_trades_again():
    cfg = EnvConfig(horizon=200, cooldown=3, cost=0.001)
    env = TradingEnv(cfg)
    action = np.array([LONG, cfg.leverage_bins - 1, 0])  # 2x long, tolerate 1 % drawdown
    trace = run(env, 0, [action] * 200)
    stops = [t for t, (_, _, info) in enumerate(trace) if info["stopped"]]
    assert stops, "a 1 % drawdown limit at 2x leverage must trigger"
    k = stops[0]
    assert trace[k][2]["drawdown"] >= 0.01
    # The next `cooldown` steps are flat: the first pays to close 2x, the rest earn nothing.
    assert trace[k + 1][1] == pytest.approx(math.log(1 - 0.001 * 2.0))
    for t in range(k + 1, k + 1 + cfg.cooldown):
        assert trace[t][2]["exposure"] == 0.0
    assert trace[k + 2][1] == 0.0
    assert trace[k + 1 + cfg.cooldown][2]["exposure"] == pytest.approx(2.0)
    assert trace[-1][2]["stops"] == len(stops)
    # Risk caps the drawdown compared with the same leverage never stopped.
    never = run(env, 0, [np.array([LONG, cfg.leverage_bins - 1, cfg.risk_bins - 1])] * 200)
    assert trace[-1][2]["max_drawdown"] < never[-1][2]["max_drawdown"]


def test_ruin_terminates_and_further_steps_raise():
    cfg = EnvConfig(horizon=500, vol=(0.05, 0.05, 0.05), drift=(-0.01, -0.01, -0.01))
    env = TradingEnv(cfg)
    env.reset(seed=0)
    action = np.array([LONG, cfg.leverage_bins - 1, cfg.risk_bins - 1])
    steps = 0
    for _ in range(500):
        _, _, terminated, truncated, info = env.step(action)
        steps += 1
        if terminated or truncated:
            break
    assert terminated and not truncated and steps < 500
    assert info["equity"] < cfg.ruin_equity
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step(action)


def test_truncates_at_horizon():
    env = TradingEnv(EnvConfig(horizon=5))
    env.reset(seed=0)
    flags = [env.step(env.buy_and_hold_action())[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]


def test_observation_partly_reveals_the_regime():
    env = TradingEnv(EnvConfig(horizon=2000))
    obs, info = env.reset(seed=5)
    hits, steps = 0, 0
    for _ in range(2000):
        hits += int(np.argmax(obs[:3])) == REGIMES.index(info["regime"])
        steps += 1
        obs, _, terminated, truncated, info = env.step(np.array([LONG, 0, 99]))
        if terminated or truncated:
            break
    accuracy = hits / steps
    assert 0.55 < accuracy < 0.97, accuracy  # informative, but not the regime itself


def test_bad_config_and_actions():
    with pytest.raises(ValueError, match="horizon must be an integer >= 1"):
        EnvConfig(horizon=0)
    with pytest.raises(ValueError, match="regime_probs must be a distribution"):
        EnvConfig(regime_probs=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="drift must give one value per regime"):
        EnvConfig(drift=(0.1, 0.2))
    with pytest.raises(ValueError, match="risk_range must lie within"):
        EnvConfig(risk_range=(0.1, 2.0))
    env = TradingEnv()
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.array([0, 0, 0]))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="is not in MultiDiscrete"):
        env.step(np.array([2, 0, 0]))
    with pytest.raises(ValueError, match="is not in MultiDiscrete"):
        env.step(np.array([0, 0]))


def test_config_errors_follow_the_dialect():
    with pytest.raises(TypeError, match=r"horizon must be an integer >= 1, got 2.5 \(float\)"):
        EnvConfig(horizon=2.5)
    with pytest.raises(ValueError, match="cooldown must be an integer >= 1, got 0"):
        EnvConfig(cooldown=0)
    with pytest.raises(TypeError, match=r"vol\[1\] must be a finite number, got 'x'"):
        EnvConfig(vol=(0.01, "x", 0.02))
    with pytest.raises(ValueError, match=r"vol\[0\] must be a finite number > 0, got 0.0"):
        EnvConfig(vol=(0.0, 0.01, 0.02))
    with pytest.raises(ValueError, match=r"switch_prob must be a finite number in \(0, 1\]"):
        EnvConfig(switch_prob=0.0)
    assert EnvConfig(drift=[0, 0, 0]).drift == (0.0, 0.0, 0.0)  # JSON lists become tuples
