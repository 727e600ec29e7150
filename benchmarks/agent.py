"""The trading agent against a random policy and buy-and-hold, over several training seeds.

Each training seed runs the same training as ``multihead agent train`` (default settings), then
evaluates the greedy policy on the same held-out seeds (``EVAL_SEED_START`` and up, never used in
training) as the baselines. CIs are Student t over the held-out episodes; the "agent - X"
columns are paired differences per episode. Several training seeds show the spread between
training runs, which a single run's CI does not.

    python benchmarks/agent.py                       # the RESULTS.md table (3 training seeds)
    python benchmarks/agent.py --seeds 0 --episodes 50 --iterations 50   # a quick look
"""

from __future__ import annotations

import argparse
import time

import torch

from multihead.agent import EnvConfig, ReinforceConfig, evaluate, format_report, train


def _ci(est: dict[str, float]) -> str:
    return f"{est['mean']:+.3f} [{est['low']:+.3f}, {est['high']:+.3f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=ReinforceConfig().iterations)
    parser.add_argument("--episodes", type=int, default=200)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
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
        rows.append(
            f"| {seed} | {took:.0f} s | {_ci(r['agent'])} | {_ci(r['random'])} | "
            f"{_ci(r['buy_and_hold'])} | {_ci(vs['random'])} | {_ci(vs['buy_and_hold'])} |"
        )
    print(
        f"Training: {args.iterations} iterations x {ReinforceConfig().num_envs} episodes of "
        f"{EnvConfig().horizon} steps per training seed. Evaluation: {args.episodes} held-out "
        "episodes, greedy actions. Returns are log(final equity); 95 % CIs."
    )
    print()
    print(
        "| train seed | train time | agent | random | buy-and-hold | agent - random "
        "| agent - buy-and-hold |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print(f"Full report for training seed {args.seeds[0]}:")
    print()
    print(format_report(reports[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
