"""Optimizers: which parameters Muon gets, one learning rate for all groups, and the state."""

import pytest
import torch

from multihead.models import DecoderConfig, DecoderLM
from multihead.optim import Combined, make_optimizer


def model() -> DecoderLM:
    torch.manual_seed(0)
    cfg = DecoderConfig(vocab_size=20, max_seq_len=8, d_model=16, num_layers=2, num_heads=2)
    return DecoderLM(cfg)


def test_adamw_decays_matrices_and_embeddings_only():
    m = model()
    opt = make_optimizer(m, "adamw", lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
    assert isinstance(opt, torch.optim.AdamW)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(m.parameters()))


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    m = model()
    opt = make_optimizer(m, "muon", lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
    assert isinstance(opt, Combined)
    muon, adam = opt.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adam, torch.optim.AdamW)
    names = {id(p): n for n, p in m.named_parameters()}
    hidden = [names[id(p)] for g in muon.param_groups for p in g["params"]]
    assert hidden and all(n.startswith("blocks.") and n.endswith("weight") for n in hidden)
    rest = {names[id(p)] for g in adam.param_groups for p in g["params"]}
    assert "embed.tokens.weight" in rest and not rest & set(hidden)
    assert len(hidden) + len(rest) == len(names)


def test_combined_steps_every_part_and_round_trips_its_state():
    m = model()
    opt = make_optimizer(m, "muon", lr=1e-2, weight_decay=0.0, betas=(0.9, 0.95))
    for group in opt.param_groups:  # a schedule reaches every group of both optimizers
        group["lr"] = 5e-3
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    tokens = torch.randint(0, 20, (2, 8))
    m(tokens).logsumexp(-1).mean().backward()
    opt.step()
    opt.zero_grad()
    moved = [n for n, p in m.named_parameters() if not torch.equal(p, before[n])]
    assert "embed.tokens.weight" in moved and "blocks.0.attn.out_proj.weight" in moved
    state = opt.state_dict()
    fresh = make_optimizer(m, "muon", lr=1e-2, weight_decay=0.0, betas=(0.9, 0.95))
    fresh.load_state_dict(state)
    assert [g["lr"] for g in fresh.param_groups] == [5e-3] * len(fresh.param_groups)
    with pytest.raises(ValueError, match="expected a combined state of 2 optimizers"):
        fresh.load_state_dict(torch.optim.AdamW(m.parameters()).state_dict())


def test_unknown_optimizer_is_named():
    with pytest.raises(ValueError, match="optimizer must be one of .* got 'lion'"):
        make_optimizer(model(), "lion", lr=1e-3, weight_decay=0.0, betas=(0.9, 0.95))
