"""Muon: the Newton-Schulz iteration against the same polynomial applied to singular values,
identical updates to torch.optim.Muon on whole matrices, packed matrices stepped as if their
blocks were separate parameters, and an exact resume through the state dict."""

import pytest
import torch

from multihead.muon import NS_COEFFICIENTS, Muon, newton_schulz

# Both optimizers run the same bfloat16 iteration, so their weights agree far below one bf16
# rounding step of an update (~lr * 2**-8 = 8e-5 at lr 0.02).
ATOL = 1e-6


def needs_torch_muon():
    if not hasattr(torch.optim, "Muon"):
        pytest.skip("this torch has no torch.optim.Muon to compare against")


def run(optimizer, params, grads):
    for g in grads:
        for p, gp in zip(params, g):
            p.grad = gp.clone()
        optimizer.step()


@pytest.mark.parametrize("shape", [(6, 6), (10, 4), (4, 10)])
def test_newton_schulz_applies_the_quintic_to_the_singular_values(shape):
    g = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    a, b, c = NS_COEFFICIENTS
    s = s / g.norm()  # the iteration starts from G / ||G||_F
    for _ in range(5):
        s = a * s + b * s**3 + c * s**5  # X -> aX + b(XX^T)X + c(XX^T)^2 X on singular values
    expected = u @ torch.diag(s) @ vh
    got = newton_schulz(g, dtype=torch.float64)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)
    assert s.min() > 0.6 and s.max() < 1.25  # near-orthogonal: what Muon steps along


@pytest.mark.parametrize("shape", [(8, 8), (12, 5), (5, 12)])
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("adjust_lr_fn", [None, "match_rms_adamw"])
def test_whole_matrices_step_exactly_like_torch_muon(shape, nesterov, adjust_lr_fn):
    needs_torch_muon()
    gen = torch.Generator().manual_seed(1)
    ours = torch.nn.Parameter(torch.randn(shape, generator=gen))
    theirs = torch.nn.Parameter(ours.detach().clone())
    kw = {"lr": 0.02, "weight_decay": 0.1, "nesterov": nesterov, "adjust_lr_fn": adjust_lr_fn}
    grads = [[torch.randn(shape, generator=gen)] for _ in range(4)]
    run(Muon([ours], **kw), [ours], grads)
    run(torch.optim.Muon([theirs], **kw), [theirs], grads)
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


def test_a_packed_matrix_steps_like_its_blocks_as_separate_parameters():
    needs_torch_muon()
    gen = torch.Generator().manual_seed(2)
    blocks = (8, 4, 4)  # [W_q; W_k; W_v] of a GQA layer
    packed = torch.nn.Parameter(torch.randn(16, 8, generator=gen))
    parts = [torch.nn.Parameter(w.detach().clone()) for w in packed.split(blocks)]
    grads = [torch.randn(16, 8, generator=gen) for _ in range(3)]
    kw = {"lr": 0.02, "weight_decay": 0.1, "adjust_lr_fn": "match_rms_adamw"}
    run(Muon([{"params": [packed], "row_blocks": [blocks]}], **kw), [packed], [[g] for g in grads])
    run(torch.optim.Muon(parts, **kw), parts, [list(g.split(blocks)) for g in grads])
    torch.testing.assert_close(packed, torch.cat(parts), atol=ATOL, rtol=0)
    # As one matrix the step differs: the blocks' updates are coupled.
    one = torch.nn.Parameter(torch.randn(16, 8, generator=torch.Generator().manual_seed(2)))
    run(Muon([one], **kw), [one], [[g] for g in grads])
    assert not torch.allclose(one, packed, atol=1e-4)


def test_state_dict_round_trip_resumes_exactly():
    gen = torch.Generator().manual_seed(3)
    w0 = torch.randn(12, 6, generator=gen)
    grads = [[torch.randn(12, 6, generator=gen)] for _ in range(4)]

    def fresh():
        p = torch.nn.Parameter(w0.clone())
        return p, Muon([{"params": [p], "row_blocks": [(6, 6)]}], lr=0.05, weight_decay=0.1)

    straight, opt = fresh()
    run(opt, [straight], grads)
    first, opt = fresh()
    run(opt, [first], grads[:2])
    state = opt.state_dict()
    resumed, opt2 = fresh()
    with torch.no_grad():
        resumed.copy_(first)
    opt2.load_state_dict(state)
    run(opt2, [resumed], grads[2:])
    assert torch.equal(resumed, straight)


def test_a_torch_muon_state_loads_and_keeps_the_row_blocks():
    needs_torch_muon()
    p = torch.nn.Parameter(torch.randn(8, 4))
    old = torch.optim.Muon([p], lr=0.01, adjust_lr_fn="match_rms_adamw")
    run(old, [p], [[torch.randn(8, 4)]])
    new = Muon([{"params": [p], "row_blocks": [(4, 4)]}], lr=0.01, adjust_lr_fn="match_rms_adamw")
    new.load_state_dict(old.state_dict())
    assert new.param_groups[0]["row_blocks"] == [(4, 4)]
    torch.testing.assert_close(new.state[p]["momentum_buffer"], old.state[p]["momentum_buffer"])


def test_bad_parameters_and_blocks_are_named():
    with pytest.raises(ValueError, match=r"Muon optimizes 2-D matrices.*shape \(4,\)"):
        Muon([torch.nn.Parameter(torch.zeros(4))])
    w = torch.nn.Parameter(torch.zeros(6, 3))
    with pytest.raises(ValueError, match=r"row_blocks\[0\]=\(4, 4\) does not split the 6 rows"):
        Muon([{"params": [w], "row_blocks": [(4, 4)]}])
    with pytest.raises(ValueError, match="row_blocks has 2 entries but the group has 1"):
        Muon([{"params": [w], "row_blocks": [None, None]}])
    with pytest.raises(ValueError, match="adjust_lr_fn must be one of"):
        Muon([w], adjust_lr_fn="rms")


def test_the_iteration_dtype_is_a_choice_and_a_float32_step_is_the_float64_one_rounded():
    gen = torch.Generator().manual_seed(3)
    start = torch.randn(12, 5, generator=gen)
    grads = [[torch.randn(12, 5, generator=gen)] for _ in range(3)]
    got = {}
    for dtype in (torch.float32, torch.float64):
        p = torch.nn.Parameter(start.clone().to(dtype))
        run(Muon([p], lr=0.02, ns_dtype=dtype), [p], [[g.to(dtype)] for (g,) in grads])
        got[dtype] = p.detach()
    # float32 iterations of 12x5 matrices agree with float64 to ~1e-7 relative per step
    torch.testing.assert_close(got[torch.float32].double(), got[torch.float64], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"ns_dtype must be one of .*got torch.float16"):
        Muon([torch.nn.Parameter(start.clone())], ns_dtype=torch.float16)


def test_a_loaded_state_keeps_this_optimizers_iteration_dtype():
    p = torch.nn.Parameter(torch.randn(8, 4))
    old = Muon([p], lr=0.01)  # bfloat16, torch.optim.Muon's
    run(old, [p], [[torch.randn(8, 4)]])
    new = Muon([p], lr=0.01, ns_dtype=torch.float32)
    new.load_state_dict(old.state_dict())
    assert new.param_groups[0]["ns_dtype"] == "float32"
    run(new, [p], [[torch.randn(8, 4)]])  # steps with the kept dtype
