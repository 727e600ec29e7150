"""Single-task vs multi-task on a synthetic problem where tasks share structure.

Data (fresh per repeat): inputs ``x ~ N(0, I_20)``; a shared nonlinear latent
``z = tanh(W x)`` with ``W`` of shape (4, 20); two tasks read it:

* ``rich``: 4-output regression ``y = V z + noise`` with many labels (2000);
* ``scarce``: 3-class classification ``argmax(U z + noise)`` with few labels (``--scarce``).

The scarce task can borrow the latent from the rich one only through a shared trunk. Models:
single-task ``scarce`` (trunk + one head, its few labels only), single-task ``rich``, and a
multi-task network (one trunk, both heads) under each loss weighting. All use the same trunk,
optimizer and number of steps. Held-out metrics (2000 fresh examples) are averaged over
``--repeats`` independent repeats; the 95 % CIs are Student t over repeats, and the "vs single"
columns are paired differences (same data and same initial trunk in each repeat).

    python benchmarks/multitask.py                 # the RESULTS.md table
    python benchmarks/multitask.py --repeats 3 --steps 300   # a quick look
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from multihead.multitask import (
    MLP,
    Classification,
    MultiTaskNetwork,
    Regression,
    make_weighting,
    mean_ci,
)

IN, LATENT, CLASSES = 20, 4, 3
RICH_LABELS, TEST = 2000, 2000


def make_data(seed: int, scarce: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(LATENT, IN, generator=g) / IN**0.5 * 2.0
    v = torch.randn(LATENT, LATENT, generator=g) / LATENT**0.5
    u = torch.randn(CLASSES, LATENT, generator=g) * 2.0

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = torch.randn(n, IN, generator=g)
        z = torch.tanh(x @ w.T)  # (n, LATENT)
        rich = z @ v.T + 0.1 * torch.randn(n, LATENT, generator=g)  # (n, LATENT)
        scarce = (z @ u.T + 0.3 * torch.randn(n, CLASSES, generator=g)).argmax(-1)
        return x, rich, scarce

    x_rich, y_rich, _ = sample(RICH_LABELS)
    x_scarce, _, y_scarce = sample(scarce)
    x_test, y_test_rich, y_test_scarce = sample(TEST)
    return {
        "x_rich": x_rich,
        "y_rich": y_rich,
        "x_scarce": x_scarce,
        "y_scarce": y_scarce,
        "x_test": x_test,
        "y_test_rich": y_test_rich,
        "y_test_scarce": y_test_scarce,
    }


def build(heads: list[str], seed: int) -> MultiTaskNetwork:
    # Same seed -> the same initial trunk for every model of a repeat (a paired comparison).
    torch.manual_seed(seed)
    trunk = MLP(in_features=IN, hidden=(64, 64))
    specs = {"rich": Regression(dim=LATENT), "scarce": Classification(CLASSES)}
    torch.manual_seed(seed + 1)
    return MultiTaskNetwork(trunk, heads={h: specs[h] for h in heads})


def fit(
    net: MultiTaskNetwork, data: dict[str, torch.Tensor], strategy: str, steps: int, seed: int
) -> dict[str, dict[str, float]]:
    heads = list(net.specs)
    weighting = make_weighting(strategy, heads=net.specs)
    opt = torch.optim.AdamW(
        [*net.parameters(), *weighting.parameters()], lr=1e-3, weight_decay=1e-2
    )
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        losses = {}
        if "rich" in heads:
            idx = torch.randint(0, RICH_LABELS, (128,), generator=g)
            out = net(data["x_rich"][idx], heads=["rich"])
            losses.update(net.losses(out, {"rich": data["y_rich"][idx]}))
        if "scarce" in heads:
            out = net(data["x_scarce"], heads=["scarce"])
            losses.update(net.losses(out, {"scarce": data["y_scarce"]}))
        opt.zero_grad()
        weighting.backward(losses, shared=net.shared_parameters())
        opt.step()
    net.eval()
    with torch.no_grad():
        out = net(data["x_test"])
        targets = {"rich": data["y_test_rich"], "scarce": data["y_test_scarce"]}
        return net.metrics(out, {h: targets[h] for h in heads})


def run(args: argparse.Namespace) -> str:
    torch.set_num_threads(1)
    strategies = ["fixed", "uncertainty", "gradnorm", "pcgrad"]
    lines = []
    for scarce in args.scarce:
        acc: dict[str, list[float]] = {"single": []}
        mse: dict[str, list[float]] = {"single": []}
        for s in strategies:
            acc[s], mse[s] = [], []
        for r in range(args.repeats):
            seed = 1000 * r + scarce
            data = make_data(seed, scarce)
            acc["single"].append(
                fit(build(["scarce"], seed), data, "fixed", args.steps, seed)["scarce"]["accuracy"]
            )
            mse["single"].append(
                fit(build(["rich"], seed), data, "fixed", args.steps, seed)["rich"]["mse"]
            )
            for s in strategies:
                m = fit(build(["rich", "scarce"], seed), data, s, args.steps, seed)
                acc[s].append(m["scarce"]["accuracy"])
                mse[s].append(m["rich"]["mse"])
            print(f"  scarce={scarce} repeat {r + 1}/{args.repeats} done", file=sys.stderr)
        lines += [
            f"Scarce task: {scarce} labels; rich task: {RICH_LABELS} labels; "
            f"{args.repeats} repeats x {args.steps} steps; held-out n = {TEST}.",
            "",
            "| model | scarce accuracy [95 % CI] | vs single (paired) "
            "| rich MSE [95 % CI] | vs single (paired) |",
            "|---|---|---|---|---|",
        ]
        for name in ["single", *strategies]:
            label = "single-task" if name == "single" else f"multi-task, {name}"
            a, m = mean_ci(acc[name]), mean_ci(mse[name])
            if name == "single":
                da = dm = "—"
            else:
                da = str(mean_ci([x - y for x, y in zip(acc[name], acc["single"])]))
                dm = str(mean_ci([x - y for x, y in zip(mse[name], mse["single"])]))
            lines.append(f"| {label} | {a} | {da} | {m} | {dm} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument(
        "--scarce", type=int, nargs="+", default=[30, 300], help="labels of the scarce task"
    )
    args = parser.parse_args(argv)
    if args.repeats < 2:
        parser.error("--repeats must be at least 2 for a confidence interval")
    start = time.time()
    print(run(args))
    print(f"({time.time() - start:.0f} s, torch {torch.__version__}, 1 thread)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
