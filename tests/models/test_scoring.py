"""Scoring in sliding windows: token_nll against direct forwards, and dynamic evaluation
(equals static scoring at lr 0, matches a hand-written score-then-step loop, is causal,
learns repeats and leaves the caller's model alone)."""

import copy

import pytest
import torch
from torch.nn import functional as F

from multihead.models import DecoderConfig, DecoderLM, dynamic_token_nll


def build() -> DecoderLM:
    torch.manual_seed(0)
    cfg = DecoderConfig(vocab_size=30, max_seq_len=8, d_model=32, num_layers=2, num_heads=4)
    return DecoderLM(cfg).eval()


def build_decoder(**kw) -> DecoderLM:
    torch.manual_seed(0)
    base = {"vocab_size": 50, "max_seq_len": 32, "d_model": 32, "num_layers": 2, "num_heads": 4}
    return DecoderLM(DecoderConfig(**{**base, **kw})).eval()


def text(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 30, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("stride", [8, 3])
def test_lr_zero_is_static_scoring(stride):
    model, tokens = build(), text(41)
    static = model.token_nll(tokens, context=8, stride=stride)
    torch.testing.assert_close(
        dynamic_token_nll(model, tokens, lr=0.0, context=8, stride=stride),
        static,
        atol=1e-5,
        rtol=1e-5,
    )


def test_matches_a_score_then_step_loop_over_non_overlapping_windows():
    model, tokens = build(), text(33)
    got = dynamic_token_nll(model, tokens, lr=1e-2, context=8, stride=8)
    ref = copy.deepcopy(model).double()  # float64 reference, written out by hand
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    expected = []
    for k in range(4):
        x, y = tokens[k * 8 : k * 8 + 8], tokens[k * 8 + 1 : k * 8 + 9]  # (8,) each
        loss = F.cross_entropy(ref(x[None])[0], y, reduction="none")  # scored before the step
        expected.append(loss.detach())
        loss.mean().backward()
        opt.step()
        opt.zero_grad()
    # Adam divides by sqrt(v) + eps, so float32 and float64 runs drift apart a little.
    torch.testing.assert_close(got.double(), torch.cat(expected), atol=2e-4, rtol=2e-4)


def test_scores_depend_only_on_earlier_tokens():
    model, tokens = build(), text(40)
    changed = tokens.clone()
    changed[25:] = (changed[25:] + 7) % 30
    a = dynamic_token_nll(model, tokens, lr=1e-2, context=8, stride=3)
    b = dynamic_token_nll(model, changed, lr=1e-2, context=8, stride=3)
    # Target i is tokens[i + 1]: targets 0..23 come before the first changed token.
    torch.testing.assert_close(a[:24], b[:24], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(a[24:], b[24:])


def test_learns_a_repeated_text_and_leaves_the_model_unchanged():
    model = build()
    before = copy.deepcopy(model.state_dict())
    tokens = text(12).repeat(20)  # (240,) one random phrase, over and over
    static = model.token_nll(tokens, context=8, stride=4)
    adapted = dynamic_token_nll(model, tokens, lr=3e-3, context=8, stride=4)
    assert adapted[-60:].mean() < 0.5 * static[-60:].mean()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize(
    ("lr", "error", "message"),
    [
        (-1e-3, ValueError, r"lr must be a finite number >= 0, got -0.001"),
        (float("nan"), ValueError, "lr must be a finite number >= 0, got nan"),
        (float("inf"), ValueError, "lr must be a finite number >= 0, got inf"),
        (True, TypeError, r"lr must be a finite number >= 0, got True \(bool\)"),
        ("1e-3", TypeError, r"lr must be a finite number >= 0, got '1e-3' \(str\)"),
    ],
)
def test_bad_learning_rate_is_named(lr, error, message):
    with pytest.raises(error, match=message):
        dynamic_token_nll(build(), text(20), lr=lr, context=8)


def test_bad_model_and_windows_are_named():
    with pytest.raises(TypeError, match="model must be a DecoderLM"):
        dynamic_token_nll(torch.nn.Linear(2, 2), text(20), lr=0.0)
    with pytest.raises(ValueError, match="context must be in"):
        dynamic_token_nll(build(), text(20), lr=0.0, context=9)
    with pytest.raises(ValueError, match="tokens must be"):
        dynamic_token_nll(build(), text(20).float(), lr=0.0)


# ---------------------------------------------------------------------- token_nll
@pytest.mark.parametrize("position", ["learned", "rope"])
def test_token_nll_stride_one_gives_each_token_its_full_context(position):
    model = build_decoder(position=position, max_seq_len=8)
    tokens = torch.randint(0, 50, (30,), generator=torch.Generator().manual_seed(1))
    nll = model.token_nll(tokens, context=8, stride=1, batch_size=5)
    assert nll.shape == (29,)
    for i in range(29):  # target tokens[i + 1], predicted from up to 8 tokens before it
        lo = max(0, i + 1 - 8)
        logits = model(tokens[None, lo : i + 1])[0, -1].double()  # (V,)
        expected = -torch.log_softmax(logits, -1)[tokens[i + 1]]
        torch.testing.assert_close(nll[i].double(), expected, atol=1e-5, rtol=1e-5)


def test_token_nll_with_stride_equal_context_is_non_overlapping_windows():
    model = build_decoder(max_seq_len=8)
    tokens = torch.randint(0, 50, (33,), generator=torch.Generator().manual_seed(2))
    nll = model.token_nll(tokens, context=8, stride=8)
    windows = tokens[:33].reshape(-1)[: 4 * 8 + 1]
    x = torch.stack([windows[i * 8 : i * 8 + 8] for i in range(4)])  # (4, 8)
    y = torch.stack([windows[i * 8 + 1 : i * 8 + 9] for i in range(4)])
    expected = torch.nn.functional.cross_entropy(
        model(x).transpose(1, 2), y, reduction="none"
    ).flatten()
    torch.testing.assert_close(nll, expected, atol=1e-5, rtol=1e-5)
    # Byte tensors (ByteCorpus.val is uint8) are token ids too.
    torch.testing.assert_close(model.token_nll(tokens.to(torch.uint8), context=8, stride=8), nll)


def test_token_nll_middle_stride_scores_every_token_once_with_enough_context():
    model = build_decoder(max_seq_len=8)
    tokens = torch.randint(0, 50, (40,), generator=torch.Generator().manual_seed(3))
    nll = model.token_nll(tokens, context=8, stride=3)
    full = model.token_nll(tokens, context=8, stride=1)
    # The first window's tokens are scored with the same (short) context either way.
    torch.testing.assert_close(nll[:8], full[:8], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(nll).all() and nll.shape == (39,)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"context": 9}, "context must be in"),
        ({"context": 4, "stride": 5}, "stride must be in"),
        ({"stride": 0}, "stride must be in"),
    ],
)
def test_token_nll_bad_arguments(kwargs, match):
    model = build_decoder(max_seq_len=8)
    with pytest.raises(ValueError, match=match):
        model.token_nll(torch.arange(20), **kwargs)
    with pytest.raises(ValueError, match="tokens must be"):
        model.token_nll(torch.arange(20)[None])
    with pytest.raises(ValueError, match=r"integer ids.*torch.float32"):
        model.token_nll(torch.arange(20.0))
