"""Optimizers: which parameters Muon gets (by role, so wrappers and renames change nothing),
its row blocks, one learning rate for all groups, and the state."""

import pytest
import torch
from torch import nn

from multihead.models import DecoderConfig, DecoderLM
from multihead.muon import Muon
from multihead.optim import Combined, make_optimizer

ARGS = {"lr": 1e-3, "weight_decay": 0.1, "betas": (0.9, 0.95)}


def model(**kw) -> DecoderLM:
    torch.manual_seed(0)
    base = {"vocab_size": 20, "max_seq_len": 8, "d_model": 16, "num_layers": 2, "num_heads": 2}
    return DecoderLM(DecoderConfig(**{**base, **kw}))


def groups(opt) -> list[tuple[list[int], dict]]:
    """Each group's parameters (by identity) and its options, for comparing optimizers."""
    return [
        ([id(p) for p in g["params"]], {k: v for k, v in g.items() if k != "params"})
        for g in opt.param_groups
    ]


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
    assert isinstance(muon, Muon) and isinstance(adam, torch.optim.AdamW)
    names = {id(p): n for n, p in m.named_parameters()}
    hidden = [names[id(p)] for g in muon.param_groups for p in g["params"]]
    assert hidden and all(n.startswith("blocks.") and n.endswith("weight") for n in hidden)
    rest = {names[id(p)] for g in adam.param_groups for p in g["params"]}
    assert "embed.tokens.weight" in rest and not rest & set(hidden)
    assert len(hidden) + len(rest) == len(names)
    # On the CPU the Newton-Schulz iteration runs in float32 (bfloat16 is emulated there)
    assert muon.param_groups[0]["ns_dtype"] == "float32"


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


@pytest.mark.parametrize("name", ["muon", "muon_whole"])
def test_muon_row_blocks_are_the_packed_projections(name):
    m = model(d_model=24, num_heads=4, num_kv_heads=2, activation="swiglu", ffn_dim=40)
    muon = make_optimizer(m, name, **ARGS).optimizers[0]
    blocks = dict(zip(map(id, muon.param_groups[0]["params"]), muon.param_groups[0]["row_blocks"]))
    packed = {}
    for block in m.blocks:  # [W_q; W_k; W_v] with 2 KV heads of 6; SwiGLU's [gate; up]
        packed[id(block.attn.in_proj.weight)] = (24, 12, 12)
        packed[id(block.ffn.up.weight)] = (40, 40)
    assert len(blocks) == 8
    for p, rows in blocks.items():
        assert rows == (packed.get(p) if name == "muon" else None)


def test_wrappers_and_renames_do_not_change_the_groups(tmp_path):
    m = model(tie_embeddings=False)
    expected = {n: groups(make_optimizer(m, n, **ARGS)) for n in ("adamw", "muon")}

    class Renamed(nn.Module):  # the same model under another attribute name
        def __init__(self, inner):
            super().__init__()
            self.language_model = inner

    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        wrappers = {
            "Sequential": nn.Sequential(m),
            "Renamed": Renamed(m),
            "compile": torch.compile(m),  # OptimizedModule; nothing compiles until called
            "DDP": nn.parallel.DistributedDataParallel(m),
        }
        for kind, wrapped in wrappers.items():
            for n, want in expected.items():
                assert groups(make_optimizer(wrapped, n, **ARGS)) == want, (kind, n)
    finally:
        torch.distributed.destroy_process_group()


def test_a_model_without_hidden_matrices_is_told_to_use_adamw():
    with pytest.raises(ValueError, match="found no hidden matrices .* in Embedding; use 'adamw'"):
        make_optimizer(nn.Embedding(4, 3), "muon", **ARGS)


def test_a_layer_with_no_heads_left_trains_with_muon():
    m = model(layer_heads=[[], [0, 1]])  # layer 0 emptied (pruning asked for it explicitly)
    assert m.blocks[0].attn.in_proj.weight.shape == (0, 16)
    opt = make_optimizer(m, "muon", **ARGS)
    before = m.blocks[1].attn.in_proj.weight.detach().clone()
    m(torch.randint(0, 20, (2, 8))).logsumexp(-1).mean().backward()
    opt.step()
    assert not torch.equal(m.blocks[1].attn.in_proj.weight, before)
