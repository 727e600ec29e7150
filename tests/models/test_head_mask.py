"""Head masks through the models: every accepted form gives the same per-layer masks,
masking a head equals zeroing that head's out_proj input columns (computed independently),
the gradient is the explicit chain-rule value and a finite difference, and bad masks are
named."""

import copy

import pytest
import torch

from multihead.models import (
    DecoderConfig,
    DecoderLM,
    Encoder,
    EncoderConfig,
    split_head_mask,
)

SMALL = {"vocab_size": 30, "max_seq_len": 16, "d_model": 24, "num_layers": 3, "num_heads": 4}


def decoder(**kw):
    torch.manual_seed(0)
    return DecoderLM(DecoderConfig(**{**SMALL, **kw})).double().eval()


def encoder(**kw):
    torch.manual_seed(0)
    return Encoder(EncoderConfig(**{**SMALL, **kw})).double().eval()


def run(model, tokens, **kw):
    out = model(tokens, **kw)
    return out if isinstance(model, DecoderLM) else out[0]  # logits or hidden states


def zero_heads(model, removed):
    """A copy whose removed heads have their rows of out_proj's input zeroed: out_proj reads
    the concatenated heads, so columns h*D .. (h+1)*D are head h's contribution."""
    copy_ = copy.deepcopy(model)
    d = model.config.head_size
    with torch.no_grad():
        for layer, head in removed:
            copy_.blocks[layer].attn.out_proj.weight[:, head * d : (head + 1) * d] = 0
    return copy_


TOKENS = torch.randint(0, 30, (2, 9), generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("build", [decoder, encoder])
@pytest.mark.parametrize("kw", [{}, {"num_kv_heads": 2, "position": "learned"}])
def test_masking_heads_equals_zeroing_their_out_proj_columns(build, kw):
    model = build(**kw)
    removed = [(0, 1), (2, 0), (2, 3)]
    mask = torch.ones(3, 4, dtype=torch.float64)
    for layer, head in removed:
        mask[layer, head] = 0
    expected = run(zero_heads(model, removed), TOKENS)
    forms = {
        "(L, H)": mask,
        "(B, L, H)": mask.expand(2, 3, 4),
        "sequence": [mask[0], None, mask[2]],  # layer 1 keeps every head
        "mapping": {0: mask[0], 2: mask[2].expand(2, 4)},
    }
    for form, hm in forms.items():
        torch.testing.assert_close(run(model, TOKENS, head_mask=hm), expected, msg=form)
    assert not torch.allclose(run(model, TOKENS), expected)


def test_per_example_masks_mask_each_row_alone():
    model = decoder()
    mask = torch.ones(2, 3, 4, dtype=torch.float64)
    mask[1, 0, 2] = 0.0  # only the second example loses layer 0's head 2
    both = model(TOKENS, head_mask=mask)
    torch.testing.assert_close(both[0], model(TOKENS[:1])[0])
    torch.testing.assert_close(both[1], zero_heads(model, [(0, 2)])(TOKENS[1:])[0])


@pytest.mark.parametrize("build", [decoder, encoder])
def test_gradient_is_the_chain_rule_through_out_proj_and_a_finite_difference(build):
    model = build(position="learned")  # RoPE computes its angles in float32; this is all fp64
    d = model.config.head_size
    loss_of = lambda m, hm=None: run(m, TOKENS, head_mask=hm).sin().sum()  # noqa: E731
    mask = torch.ones(3, 4, dtype=torch.float64, requires_grad=True)
    loss_of(model, mask).backward()
    # A head mask m_h scales head h's out_proj columns, so at m = 1
    # dL/dm_h = sum(dL/dW[:, cols_h] * W[:, cols_h]) (plain autograd on the weights).
    model.zero_grad()
    loss_of(model).backward()
    explicit = torch.tensor(
        [
            [
                (
                    b.attn.out_proj.weight.grad[:, h * d : (h + 1) * d]
                    * b.attn.out_proj.weight[:, h * d : (h + 1) * d]
                )
                .sum()
                .item()
                for h in range(4)
            ]
            for b in model.blocks
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(mask.grad, explicit, atol=1e-9, rtol=1e-9)
    eps = 1e-6
    for layer, head in [(0, 0), (1, 3), (2, 2)]:
        up, down = torch.ones(3, 4, dtype=torch.float64), torch.ones(3, 4, dtype=torch.float64)
        up[layer, head] += eps
        down[layer, head] -= eps
        with torch.no_grad():
            fd = (loss_of(model, up) - loss_of(model, down)) / (2 * eps)
        torch.testing.assert_close(mask.grad[layer, head], fd, atol=1e-8, rtol=1e-7)


def test_the_forms_split_into_the_same_layer_masks():
    m = torch.rand(3, 4)
    expected = list(m)
    for form in (m, [m[0], m[1], m[2]], {0: m[0], 1: m[1], 2: m[2]}):
        for got, want in zip(split_head_mask(form, heads=(4, 4, 4), batch=2), expected):
            assert torch.equal(got, want)
    per_example = split_head_mask(m.expand(2, 3, 4), heads=(4, 4, 4), batch=2)
    assert [p.shape for p in per_example] == [(2, 4)] * 3
    assert split_head_mask(None, heads=(4, 2), batch=1) == [None, None]
    assert split_head_mask({1: torch.ones(2)}, heads=(4, 2), batch=1)[0] is None


@pytest.mark.parametrize(
    ("head_mask", "error", "message"),
    [
        (
            torch.ones(3, 5),
            ValueError,
            r"shape \(3, 5\) but \(L, H\) = \(3, 4\) or \(B, L, H\) = "
            r"\(2, 3, 4\)",
        ),
        (torch.ones(4, 3, 4), ValueError, r"shape \(4, 3, 4\) but \(L, H\)"),
        ([None, None], ValueError, "head_mask has 2 entries but the model has 3 attention layers"),
        (
            [None, torch.ones(3), None],
            ValueError,
            r"head_mask\[1\] has shape \(3,\) but this "
            r"layer has 4 heads: \(H_l,\) = \(4,\) or \(B, H_l\) = \(2, 4\)",
        ),
        ({3: torch.ones(4)}, ValueError, r"names layer 3 but the model has 3 attention layers"),
        ({-1: torch.ones(4)}, ValueError, "names layer -1"),
        ({"0": torch.ones(4)}, TypeError, "keys must be layer numbers"),
        ([None, [1, 0, 1, 1], None], TypeError, r"head_mask\[1\] must be a tensor"),
        (torch.ones(3, 4, dtype=torch.long), TypeError, "dtype torch.int64; a head mask is"),
        ("all", TypeError, "head_mask must be a tensor"),
    ],
)
def test_bad_head_masks_are_named(head_mask, error, message):
    with pytest.raises(error, match=message):
        decoder()(TOKENS, head_mask=head_mask)


def test_pruned_models_take_per_layer_masks_but_no_single_tensor():
    model = decoder(layer_heads=[[0, 1, 2, 3], [1, 3], [2]])
    out = model(TOKENS, head_mask=[None, torch.tensor([1.0, 0.0]).double(), None])
    d = model.config.head_size
    with torch.no_grad():
        model.blocks[1].attn.out_proj.weight[:, d : 2 * d] = 0  # its second kept head (id 3)
    torch.testing.assert_close(out, model(TOKENS))
    with pytest.raises(ValueError, match=r"layers have \(4, 2, 1\) heads; pass a sequence"):
        model(TOKENS, head_mask=torch.ones(3, 4))
