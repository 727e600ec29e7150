"""Loss weighting: fixed, uncertainty (Kendall et al. 2018), GradNorm (Chen et al. 2018) and
PCGrad (Yu et al. 2020), each checked against hand computations."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from multihead.multitask import (
    MLP,
    Classification,
    GradNorm,
    MultiTaskNetwork,
    PCGrad,
    Regression,
    make_weighting,
    pcgrad_project,
)


def test_fixed_weighting_gradient_is_weighted_sum():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    w = make_weighting("fixed", heads=["a", "b"], weights={"a": 0.25})
    total = w.backward({"a": (p**2).sum(), "b": (3 * p).sum()}, shared=[p])
    assert total.item() == pytest.approx(0.25 * 5 + 3 * -1)
    torch.testing.assert_close(p.grad, 0.25 * 2 * p.detach() + 3)
    assert w.weights() == {"a": 0.25, "b": 1.0}
    with pytest.raises(ValueError, match=r"weights name unknown heads \['c'\]"):
        make_weighting("fixed", heads=["a"], weights={"c": 1.0})
    with pytest.raises(ValueError, match="must be non-negative"):
        make_weighting("fixed", heads=["a"], weights={"a": -1.0})


def test_uncertainty_weighting_matches_kendall_formula_and_analytic_gradient():
    specs = {"reg": Regression(), "cls": Classification(3)}
    w = make_weighting("uncertainty", heads=specs, init_log_var=0.0)
    with torch.no_grad():
        w.log_vars.copy_(torch.tensor([0.3, -0.7]))
    p = torch.nn.Parameter(torch.tensor(1.5))
    l_reg, l_cls = 2.0 * p, 0.5 * p  # 3.0 and 0.75
    total = w.backward({"reg": l_reg, "cls": l_cls}, shared=[p])
    s1, s2 = 0.3, -0.7
    # Kendall et al. eq. 7: 1/(2 sigma1^2) L1 + 1/sigma2^2 L2 + log sigma1 + log sigma2.
    expected = 0.5 * math.exp(-s1) * 3.0 + s1 / 2 + math.exp(-s2) * 0.75 + s2 / 2
    assert total.item() == pytest.approx(expected, rel=1e-6)
    d_s = [-0.5 * math.exp(-s1) * 3.0 + 0.5, -math.exp(-s2) * 0.75 + 0.5]
    assert w.log_vars.grad.tolist() == pytest.approx(d_s, rel=1e-6)
    assert p.grad.item() == pytest.approx(0.5 * math.exp(-s1) * 2.0 + math.exp(-s2) * 0.5)
    assert w.weights()["reg"] == pytest.approx(0.5 * math.exp(-s1), rel=1e-6)


def test_uncertainty_weighting_learns_the_optimal_log_variances():
    specs = {"reg": Regression(), "cls": Classification(2)}
    w = make_weighting("uncertainty", heads=specs)
    opt = torch.optim.Adam(w.parameters(), lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        w.backward({"reg": torch.tensor(4.0), "cls": torch.tensor(0.1)}, shared=[])
        opt.step()
    # Stationary points: s = log L for a Gaussian term, s = log 2L for a categorical one.
    assert w.log_vars.tolist() == pytest.approx([math.log(4.0), math.log(0.2)], abs=1e-2)


def test_uncertainty_weighting_needs_specs():
    with pytest.raises(TypeError, match="needs each head's spec"):
        make_weighting("uncertainty", heads=["a", "b"])


def test_gradnorm_weight_gradient_matches_hand_computation():
    g = GradNorm(heads=["a", "b"], alpha=1.5)
    with torch.no_grad():
        g.task_weights.copy_(torch.tensor([1.2, 0.8]))
        g.initial_losses.copy_(torch.tensor([2.0, 1.0]))
    losses = torch.tensor([1.0, 0.9])
    norms = torch.tensor([3.0, 1.0])
    lgrad = g.weight_loss(["a", "b"], losses, norms)
    (grad,) = torch.autograd.grad(lgrad, g.task_weights)
    # By hand: G = w * norms = (3.6, 0.8), mean 2.2; loss ratios (0.5, 0.9), rates
    # r = ratio / 0.7; targets 2.2 * r^1.5; L_grad = sum |G - target|.
    rates = [0.5 / 0.7, 0.9 / 0.7]
    targets = [2.2 * r**1.5 for r in rates]
    G = [3.6, 0.8]
    assert lgrad.item() == pytest.approx(sum(abs(a - b) for a, b in zip(G, targets)), rel=1e-6)
    expected = [math.copysign(n, gi - t) for n, gi, t in zip([3.0, 1.0], G, targets)]
    assert grad.tolist() == pytest.approx(expected)
    assert expected == [3.0, -1.0]  # the fast task with the large gradient loses weight


def test_gradnorm_backward_fills_network_and_weight_gradients_and_renormalises():
    torch.manual_seed(0)
    theta = torch.nn.Parameter(torch.randn(4))
    g = make_weighting("gradnorm", heads=["big", "small"], alpha=1.0)
    opt = torch.optim.SGD([{"params": [theta], "lr": 1e-3}, {"params": g.parameters()}], lr=0.01)

    def losses():
        return {"big": 100.0 * (theta**2).sum(), "small": ((theta - 1.0) ** 2).sum()}

    l0 = losses()
    g.backward(l0, shared=[theta])
    torch.testing.assert_close(g.initial_losses, torch.stack([l0["big"], l0["small"]]).detach())
    # With both weights at 1 the network sees the plain sum.
    expected = 200.0 * theta.detach() + 2.0 * (theta.detach() - 1.0)
    torch.testing.assert_close(theta.grad, expected)
    assert g.task_weights.grad[0] > 0 > g.task_weights.grad[1]
    for _ in range(200):
        opt.step()
        opt.zero_grad()
        g.backward(losses(), shared=[theta])
    weights = g.weights()
    assert sum(weights.values()) == pytest.approx(2.0)
    assert weights["big"] < 0.5 < 1.5 < weights["small"]


def pcgrad_reference(grads: list[list[float]], orders: list[list[int]]) -> list[float]:
    """Yu et al. 2020, Algorithm 1, written plainly with given orders."""

    def dot(a, b):
        return sum(x * y for x, y in zip(a, b))

    total = [0.0] * len(grads[0])
    for i, order in enumerate(orders):
        gi = list(grads[i])
        for j in order:
            d = dot(gi, grads[j])
            if j != i and d < 0:
                gi = [x - d / dot(grads[j], grads[j]) * y for x, y in zip(gi, grads[j])]
        total = [a + b for a, b in zip(total, gi)]
    return total


def test_pcgrad_projection_on_hand_made_gradients():
    # g1 = (1, 0), g2 = (-1, 1) conflict: g1' = (0.5, 0.5), g2' = (0, 1).
    out = pcgrad_project(torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64))
    assert out.tolist() == pytest.approx([0.5, 1.5])
    # No conflict: the plain sum.
    out = pcgrad_project(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    assert out.tolist() == pytest.approx([2.0, 1.0])
    # Three tasks: the result is the reference for one of the possible random orders.
    grads = [[1.0, 0.0, 0.5], [-1.0, 1.0, 0.0], [0.0, -1.0, -2.0]]
    possible = []
    others = [[j for j in range(3) if j != i] for i in range(3)]
    for combo in itertools.product(*(list(itertools.permutations(o)) for o in others)):
        possible.append(pcgrad_reference(grads, [list(c) for c in combo]))
    gen = torch.Generator().manual_seed(3)
    for _ in range(5):
        got = pcgrad_project(torch.tensor(grads, dtype=torch.float64), generator=gen).tolist()
        assert any(got == pytest.approx(p, abs=1e-12) for p in possible)


def test_pcgrad_backward_projects_shared_gradients_only():
    torch.manual_seed(0)
    net = MultiTaskNetwork(
        MLP(in_features=3, hidden=(5,)), heads={"a": Regression(), "b": Regression()}
    )
    x = torch.randn(6, 3)
    ta, tb = torch.randn(6), torch.randn(6)
    w = PCGrad(heads=net.specs, weights={"a": 2.0}, seed=0)

    def losses():
        out = net(x)
        return net.losses(out, {"a": ta, "b": tb})

    shared = net.shared_parameters()
    ga = torch.cat([g.reshape(-1) for g in torch.autograd.grad(2.0 * losses()["a"], shared)])
    gb = torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses()["b"], shared)])
    head_a = torch.autograd.grad(2.0 * losses()["a"], list(net.heads["a"].parameters()))
    w.backward(losses(), shared=shared)
    got = torch.cat([p.grad.reshape(-1) for p in shared])
    expected = pcgrad_project(torch.stack([ga, gb]))
    torch.testing.assert_close(got, expected)
    for p, g in zip(net.heads["a"].parameters(), head_a):
        torch.testing.assert_close(p.grad, g)
    if torch.dot(ga, gb) < 0:  # projected gradients no longer conflict
        assert not torch.allclose(got, ga + gb)


@pytest.mark.parametrize("strategy", ["fixed", "uncertainty", "gradnorm", "pcgrad"])
def test_every_strategy_trains_a_two_task_network(strategy):
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    targets = {"cls": (x[:, 0] + x[:, 1] > 0).long(), "reg": 3.0 * x[:, 0] - x[:, 2]}
    net = MultiTaskNetwork(
        MLP(in_features=4, hidden=(32,)), heads={"cls": Classification(2), "reg": Regression()}
    )
    weighting = make_weighting(strategy, heads=net.specs)
    opt = torch.optim.Adam([*net.parameters(), *weighting.parameters()], lr=0.02)
    first = {k: v.item() for k, v in net.losses(net(x), targets).items()}
    for _ in range(150):
        opt.zero_grad()
        weighting.backward(net.losses(net(x), targets), shared=net.shared_parameters())
        opt.step()
    last = net.losses(net(x), targets)
    for name in first:
        assert last[name].item() < 0.2 * first[name], (name, first[name], last[name].item())


def test_bad_weighting_input():
    with pytest.raises(ValueError, match=r"unknown weighting strategy 'dwa'; expected one of"):
        make_weighting("dwa", heads=["a"])
    with pytest.raises(TypeError, match="unknown option"):
        make_weighting("fixed", heads=["a"], alpha=2.0)
    w = make_weighting("fixed", heads=["a"])
    p = torch.nn.Parameter(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"heads \['b'\] that this fixed weighting"):
        w.backward({"b": p * 1}, shared=[p])
    with pytest.raises(ValueError, match="loss for head 'a' is nan"):
        w.backward({"a": p * float("nan")}, shared=[p])
    with pytest.raises(ValueError, match="needs the shared parameters"):
        make_weighting("pcgrad", heads=["a"]).backward({"a": p * 1}, shared=[])
    with pytest.raises(ValueError, match="name a head twice"):
        make_weighting("fixed", heads=["a", "a"])
