"""Held-out evaluation of a trading policy against a random policy and buy-and-hold.

Every policy plays the same held-out seeds (seeds fix the price path), so the comparison is
paired: the confidence interval of "agent minus baseline" is computed on per-seed differences.

Example:
    >>> from multihead_apps.agent.env import EnvConfig
    >>> from multihead_apps.agent.policy import TradingPolicy
    >>> cfg = EnvConfig(horizon=16)
    >>> report = evaluate(TradingPolicy(env_config=cfg, hidden=(8,)), env_config=cfg,
    ...                   episodes=4, progress=False)
    >>> sorted(report["returns"])
    ['agent', 'buy_and_hold', 'random']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from multihead.multitask.stats import mean_ci
from multihead_apps.agent.env import REGIMES, EnvConfig, TradingEnv
from multihead_apps.agent.policy import ACTION_HEADS, TradingPolicy
from multihead_apps.agent.reinforce import EVAL_SEED_START


class Actor(Protocol):
    """Chooses actions for a batch of envs that started on ``seeds``."""

    def start(self, seeds: Sequence[int]) -> None: ...

    def act(self, obs: np.ndarray) -> np.ndarray:
        """``(N, D)`` observations -> ``(N, 3)`` int actions."""
        ...


class PolicyActor:
    """The trained policy: the mode of each head (``greedy``) or a seeded sample."""

    def __init__(self, policy: TradingPolicy, *, greedy: bool = True) -> None:
        self.policy = policy
        self.greedy = greedy
        self.generator = torch.Generator()

    def start(self, seeds: Sequence[int]) -> None:
        self.generator.manual_seed(int(seeds[0]))
        self.policy.eval()

    def act(self, obs: np.ndarray) -> np.ndarray:
        step = self.policy.act(torch.from_numpy(obs), greedy=self.greedy, generator=self.generator)
        return step.actions.numpy()


class RandomActor:
    """Uniform over the action space, seeded per episode."""

    def __init__(self, env_config: EnvConfig) -> None:
        self.nvec = np.array([2, env_config.leverage_bins, env_config.risk_bins])
        self.rngs: list[np.random.Generator] = []

    def start(self, seeds: Sequence[int]) -> None:
        # Offset so the random actions are not the same stream as the env's prices.
        self.rngs = [np.random.default_rng(int(s) + 12345) for s in seeds]

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.stack([rng.integers(0, self.nvec) for rng in self.rngs[: len(obs)]])


class BuyAndHoldActor:
    """Long at 1x leverage for the whole episode, never stopped out."""

    def __init__(self, env_config: EnvConfig) -> None:
        self.action = TradingEnv(env_config).buy_and_hold_action()

    def start(self, seeds: Sequence[int]) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.tile(self.action, (len(obs), 1))


def play(
    actor: Actor,
    env_config: EnvConfig,
    seeds: Sequence[int],
    *,
    batch: int = 25,
    bar: tqdm | None = None,
) -> dict[str, np.ndarray]:
    """Play one episode per seed; return per-episode ``return``, ``max_drawdown``, ``stops``,
    ``cost`` and the per-step ``actions`` ``(E, T, 3)``, ``regimes`` ``(E, T)`` and ``alive``
    ``(E, T)``."""
    horizon = env_config.horizon
    e = len(seeds)
    out = {
        "return": np.zeros(e),
        "max_drawdown": np.zeros(e),
        "stops": np.zeros(e),
        "cost": np.zeros(e),
        "actions": np.zeros((e, horizon, 3), dtype=np.int64),
        "regimes": np.zeros((e, horizon), dtype=np.int64),
        "alive": np.zeros((e, horizon), dtype=bool),
    }
    envs = [TradingEnv(env_config) for _ in range(min(batch, e))]
    for start in range(0, e, batch):
        chunk = list(seeds[start : start + batch])
        idx = np.arange(start, start + len(chunk))
        actor.start(chunk)
        resets = [env.reset(seed=s) for env, s in zip(envs, chunk)]
        obs = np.stack([o for o, _ in resets])
        regime = [REGIMES.index(info["regime"]) for _, info in resets]
        running = np.ones(len(chunk), dtype=bool)
        for t in range(horizon):
            actions = actor.act(obs)
            out["actions"][idx, t] = actions
            out["regimes"][idx, t] = regime
            out["alive"][idx, t] = running
            for i in np.flatnonzero(running):
                o, r, terminated, truncated, info = envs[i].step(actions[i])
                obs[i] = o
                regime[i] = REGIMES.index(info["regime"])
                out["return"][idx[i]] += r
                out["cost"][idx[i]] += info["cost"]
                out["max_drawdown"][idx[i]] = info["max_drawdown"]
                out["stops"][idx[i]] = info["stops"]
                running[i] = not (terminated or truncated)
            if not running.any():
                break
        if bar is not None:
            bar.update(len(chunk))
    return out


def action_distribution(
    episodes: dict[str, np.ndarray], env_config: EnvConfig
) -> dict[str, dict[str, Any]]:
    """What each head chose, overall and per (hidden) regime: the long fraction for ``side``;
    mean and 10/50/90 % quantiles of the chosen values for ``leverage`` and ``risk``."""
    alive = episodes["alive"]
    actions = episodes["actions"][alive]  # (M, 3)
    regimes = episodes["regimes"][alive]  # (M,)
    values = {
        "leverage": env_config.leverage_values()[actions[:, 1]],
        "risk": env_config.risk_values()[actions[:, 2]],
    }
    groups = {"all": np.ones(len(actions), dtype=bool)}
    groups.update({r: regimes == i for i, r in enumerate(REGIMES)})
    out: dict[str, dict[str, Any]] = {h: {} for h in ACTION_HEADS}
    for g, sel in groups.items():
        if not sel.any():
            continue
        out["side"][g] = {"long": float(actions[sel, 0].mean()), "steps": int(sel.sum())}
        for head, v in values.items():
            q10, q50, q90 = np.quantile(v[sel], [0.1, 0.5, 0.9])
            out[head][g] = {
                "mean": float(v[sel].mean()),
                "q10": float(q10),
                "median": float(q50),
                "q90": float(q90),
            }
    return out


def evaluate(
    policy: TradingPolicy,
    *,
    env_config: EnvConfig | None = None,
    episodes: int = 200,
    seed_start: int = EVAL_SEED_START,
    greedy: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Compare ``policy`` with a random policy and buy-and-hold on held-out seeds.

    Returns:
        ``{"returns": {name: Estimate-as-dict}, "vs": {baseline: paired difference},
        "max_drawdown": {...}, "stops": {...}, "cost": {...}, "actions": {head: ...},
        "episodes": n, "seed_start": s, "greedy": bool}``. Returns are episode log returns
        (``log`` of final equity).
    """
    env_config = env_config or policy.env_config
    if episodes < 2:
        raise ValueError(f"episodes must be at least 2 for a confidence interval, got {episodes}")
    seeds = list(range(seed_start, seed_start + episodes))
    actors: dict[str, Actor] = {
        "agent": PolicyActor(policy, greedy=greedy),
        "random": RandomActor(env_config),
        "buy_and_hold": BuyAndHoldActor(env_config),
    }
    results = {}
    with tqdm(
        total=len(actors) * episodes, desc="agent eval", unit="ep", disable=not progress
    ) as bar:
        for name, actor in actors.items():
            bar.set_postfix(policy=name)
            results[name] = play(actor, env_config, seeds, bar=bar)
    report: dict[str, Any] = {
        "episodes": episodes,
        "seed_start": seed_start,
        "greedy": greedy,
        "returns": {k: mean_ci(v["return"]).as_dict() for k, v in results.items()},
        "vs": {
            k: mean_ci(results["agent"]["return"] - results[k]["return"]).as_dict()
            for k in ("random", "buy_and_hold")
        },
        "max_drawdown": {k: float(v["max_drawdown"].mean()) for k, v in results.items()},
        "stops": {k: float(v["stops"].mean()) for k, v in results.items()},
        "cost": {k: float(v["cost"].mean()) for k, v in results.items()},
        "actions": action_distribution(results["agent"], env_config),
    }
    return report


def format_report(report: dict[str, Any]) -> str:
    """A plain-text (Markdown) rendering of :func:`evaluate`'s report."""
    mode = "greedy (mode of each head)" if report["greedy"] else "sampled"
    lines = [
        f"Held-out seeds {report['seed_start']}..{report['seed_start'] + report['episodes'] - 1}"
        f" ({report['episodes']} episodes), agent actions: {mode}.",
        "Episode return = log(final equity); 95 % CI (Student t).",
        "",
        "| policy | mean return [95 % CI] | mean max drawdown | stops/episode | costs/episode |",
        "|---|---|---|---|---|",
    ]
    for name, est in report["returns"].items():
        lines.append(
            f"| {name} | {_fmt(est)} | {report['max_drawdown'][name]:.3f} | "
            f"{report['stops'][name]:.2f} | {report['cost'][name]:.4f} |"
        )
    lines += ["", "| paired difference | mean [95 % CI] |", "|---|---|"]
    for name, est in report["vs"].items():
        lines.append(f"| agent - {name} | {_fmt(est)} |")
    acts = report["actions"]
    lines += [
        "",
        "Agent action distribution per head (regime is hidden from the agent):",
        "",
        "| regime | steps | side: long fraction | leverage mean (q10/median/q90) |"
        " risk mean (q10/median/q90) |",
        "|---|---|---|---|---|",
    ]
    for g, side in acts["side"].items():
        lev, risk = acts["leverage"][g], acts["risk"][g]
        lines.append(
            f"| {g} | {side['steps']} | {side['long']:.3f} | {lev['mean']:.2f} "
            f"({lev['q10']:.2f}/{lev['median']:.2f}/{lev['q90']:.2f}) | {risk['mean']:.2f} "
            f"({risk['q10']:.2f}/{risk['median']:.2f}/{risk['q90']:.2f}) |"
        )
    return "\n".join(lines)


def _fmt(est: dict[str, float]) -> str:
    return f"{est['mean']:+.4f} [{est['low']:+.4f}, {est['high']:+.4f}]"
