"""The trading agent against a random policy and buy-and-hold, over several training seeds.

Each training seed runs the same training as ``multihead agent train`` (default settings), then
evaluates the greedy policy on the same held-out seeds (``EVAL_SEED_START`` and up, never used in
training) as the baselines. CIs are Student t over the held-out episodes; the "agent - X"
columns are paired differences per episode. Several training seeds show the spread between
training runs, which a single run's CI does not.

For context (not an acceptance baseline) it also plays a hand-written rule that knows what the
indicator means: 2x long when the bull component is largest, 2x short when bear is, nearly
flat in chop, never stopped. It shows how far the learned policy is from a simple good one.

    python benchmarks/agent.py                       # the RESULTS.md table (3 training seeds)
    python benchmarks/agent.py --seeds 0 --episodes 50 --iterations 50   # a quick look
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import torch

from multihead.multitask import mean_ci
from multihead_apps.agent import EnvConfig, ReinforceConfig, evaluate, format_report, train
from multihead_apps.agent.env import LONG, SHORT
from multihead_apps.agent.evaluate import PolicyActor, play
from multihead_apps.agent.reinforce import EVAL_SEED_START


class IndicatorRule:
    """Follow the argmax of the regime indicator (observation columns 0..2)."""

    def __init__(self, cfg: EnvConfig) -> None:
        self.top_lev, self.top_risk = cfg.leverage_bins - 1, cfg.risk_bins - 1

    def start(self, seeds: Sequence[int]) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        regime = obs[:, :3].argmax(1)  # 0 bull, 1 bear, 2 chop
        side = np.where(regime == 1, SHORT, LONG)
        lev = np.where(regime == 2, 0, self.top_lev)
        return np.stack([side, lev, np.full_like(side, self.top_risk)], axis=1)


def _ci(est: dict[str, float]) -> str:
    return f"{est['mean']:+.3f} [{est['low']:+.3f}, {est['high']:+.3f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=ReinforceConfig().iterations)
    parser.add_argument("--episodes", type=int, default=200)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = EnvConfig()
    seeds = list(range(EVAL_SEED_START, EVAL_SEED_START + args.episodes))
    rule = play(IndicatorRule(cfg), cfg, seeds)["return"]
    rows, reports = [], []
    for seed in args.seeds:
        start = time.time()
        result = train(
            ReinforceConfig(seed=seed, iterations=args.iterations),
            env_config=EnvConfig(),
            progress=False,
        )
        took = time.time() - start
        report = evaluate(result.policy, episodes=args.episodes, progress=False)
        reports.append(report)
        r, vs = report["returns"], report["vs"]
        # The same greedy episodes evaluate() played, kept per seed for the paired difference.
        agent = play(PolicyActor(result.policy, greedy=True), cfg, seeds)["return"]
        vs_rule = mean_ci(agent - rule).as_dict()
        rows.append(
            f"| {seed} | {took:.0f} s | {_ci(r['agent'])} | {_ci(r['random'])} | "
            f"{_ci(r['buy_and_hold'])} | {_ci(vs['random'])} | {_ci(vs['buy_and_hold'])} | "
            f"{_ci(vs_rule)} |"
        )
    print(
        f"Training: {args.iterations} iterations x {ReinforceConfig().num_envs} episodes of "
        f"{EnvConfig().horizon} steps per training seed. Evaluation: {args.episodes} held-out "
        "episodes, greedy actions. Returns are log(final equity); 95 % CIs."
    )
    print()
    print(
        "| train seed | train time | agent | random | buy-and-hold | agent - random "
        "| agent - buy-and-hold | agent - indicator rule |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print(f"Indicator rule (context): {_ci(mean_ci(rule).as_dict())}")
    print()
    print(f"Full report for training seed {args.seeds[0]}:")
    print()
    print(format_report(reports[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
