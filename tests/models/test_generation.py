"""Generation: the same tokens with and without the cache and batched, stop tokens, sampling
options as one Sampling or as keywords, and their validation."""

import pytest
import torch

from multihead.models import DecoderConfig, DecoderLM, Sampling, sample_next


def build(**kw):
    torch.manual_seed(0)
    base = {"vocab_size": 50, "max_seq_len": 32, "d_model": 32, "num_layers": 2, "num_heads": 4}
    return DecoderLM(DecoderConfig(**{**base, **kw})).eval()


@pytest.mark.parametrize(
    "kw",
    [
        {"position": "rope", "num_kv_heads": 2, "activation": "swiglu", "norm": "rmsnorm"},
        {"position": "alibi", "window": 4},
        {"position": "learned", "rope_interleaved": True},
    ],
)
def test_greedy_same_with_and_without_cache_and_batched(kw):
    model = build(**kw)
    prompts = [[1, 2, 3, 4, 5, 6, 7], [8, 9], [10, 11, 12]]
    cached = model.generate(prompts, max_new_tokens=10)
    uncached = model.generate(prompts, max_new_tokens=10, use_cache=False)
    single = [model.generate([p], max_new_tokens=10)[0] for p in prompts]
    assert cached == uncached == single
    assert [len(o) for o in cached] == [10, 10, 10]


def test_stop_tokens_end_rows_and_are_included():
    model = build()
    free = model.generate([[1, 2, 3]], max_new_tokens=8)[0]
    stop = free[3]
    out = model.generate([[1, 2, 3]], max_new_tokens=8, stop_tokens=[stop])[0]
    assert out == free[: free.index(stop) + 1]


def test_sampling_options():
    model = build()
    g = torch.Generator().manual_seed(1)
    a = model.generate([[1, 2]], max_new_tokens=6, temperature=1.0, generator=g)
    g = torch.Generator().manual_seed(1)
    b = model.generate([[1, 2]], max_new_tokens=6, temperature=1.0, generator=g)
    assert a == b
    greedy = model.generate([[1, 2]], max_new_tokens=6)
    assert model.generate([[1, 2]], max_new_tokens=6, temperature=0.7, top_k=1) == greedy
    assert model.generate([[1, 2]], max_new_tokens=6, temperature=0.7, top_p=1e-6) == greedy


def test_top_k_and_top_p_filter_the_right_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    draws = {int(sample_next(logits, temperature=1.0, top_k=2, generator=g)) for _ in range(200)}
    assert draws == {0, 1}
    draws = {int(sample_next(logits, temperature=1.0, top_p=0.7, generator=g)) for _ in range(200)}
    assert draws == {0, 1}  # 0.5 < 0.7, 0.5 + 0.3 >= 0.7: the nucleus is {0, 1}


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"max_new_tokens": -1}, "max_new_tokens must be an integer >= 0"),
        ({"max_new_tokens": 2, "temperature": -1.0}, "temperature must be a finite number >= 0"),
        ({"max_new_tokens": 2, "top_k": 0}, "top_k must be an integer >= 1, got 0"),
        ({"max_new_tokens": 2, "top_p": 0.0}, r"top_p must be a finite number in \(0, 1\]"),
        ({"max_new_tokens": 40}, "exceeds max_seq_len=32"),
    ],
)
def test_generate_rejects_bad_arguments(kw, message):
    model = build(position="learned")
    with pytest.raises(ValueError, match=message):
        model.generate([[1, 2]], **kw)


def test_a_sampling_object_and_keywords_are_the_same_request():
    model = build()
    nucleus = Sampling(temperature=0.9, top_k=10, top_p=0.8, stop_tokens=[3])
    assert nucleus.stop_tokens == (3,)  # stored as a tuple: the dataclass stays hashable
    a = model.generate(
        [[1, 2]], max_new_tokens=6, sampling=nucleus, generator=torch.Generator().manual_seed(4)
    )
    b = model.generate(
        [[1, 2]],
        max_new_tokens=6,
        temperature=0.9,
        top_k=10,
        top_p=0.8,
        stop_tokens=[3],
        generator=torch.Generator().manual_seed(4),
    )
    c = [
        int(t[0])
        for t in model.stream(
            [[1, 2]], max_new_tokens=6, sampling=nucleus, generator=torch.Generator().manual_seed(4)
        )
    ]
    assert a == b and a[0] == [t for t in c if t >= 0]
    logits = torch.randn(3, 50)
    torch.testing.assert_close(sample_next(logits, Sampling()), logits.argmax(-1))


def test_sampling_and_keywords_together_or_unknown_keywords_are_refused():
    model = build()
    with pytest.raises(ValueError, match=r"not both \(got sampling and \['top_k'\]\)"):
        model.generate([[1]], max_new_tokens=1, sampling=Sampling(), top_k=3)
    with pytest.raises(TypeError, match=r"unknown sampling options \['topk'\]; the options"):
        model.generate([[1]], max_new_tokens=1, topk=3)
    with pytest.raises(TypeError, match="sampling must be a Sampling, got dict"):
        model.generate([[1]], max_new_tokens=1, sampling={"top_k": 3})


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"temperature": float("nan")}, ValueError, "temperature must be a finite number"),
        (
            {"temperature": "hot"},
            TypeError,
            "temperature must be a finite number >= 0, got 'hot' \\(str\\)",
        ),
        ({"top_k": True}, TypeError, r"top_k must be an integer >= 1, got True \(bool\)"),
        ({"top_p": 1.5}, ValueError, r"top_p must be a finite number in \(0, 1\], got 1.5"),
        ({"stop_tokens": "ab"}, TypeError, "stop_tokens must be a sequence of token ids, got str"),
        ({"stop_tokens": [1, -2]}, ValueError, "stop_tokens entries must be an integer >= 0"),
    ],
)
def test_sampling_is_validated_when_built(kwargs, error, message):
    with pytest.raises(error, match=message):
        Sampling(**kwargs)


def test_prompt_and_stop_token_ids_outside_the_vocabulary_are_named():
    model = build()  # vocab_size=50
    with pytest.raises(ValueError, match=r"prompt 1 has token id 50 outside the vocabulary"):
        model.generate([[1, 2], [3, 50]], max_new_tokens=2)
    with pytest.raises(ValueError, match=r"prompts has token id -1 outside the vocabulary"):
        model.generate(torch.tensor([[1, -1]]), max_new_tokens=2)
    with pytest.raises(ValueError, match=r"stop_tokens \[77\] are outside the vocabulary"):
        model.generate([[1, 2]], max_new_tokens=2, stop_tokens=[77])


def test_stream_checks_its_arguments_when_called_not_at_first_next():
    model = build()
    with pytest.raises(ValueError, match="max_new_tokens must be an integer >= 0"):
        model.stream([[1, 2]], max_new_tokens=-1)  # no next(): the call itself raises
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.stream([[1, 2]], max_new_tokens=2, stop_tokens=[10_000])


@pytest.mark.parametrize("use_cache", [True, False])
def test_every_decoding_step_runs_without_autograd(use_cache):
    # The steps are a generator: its body runs at each next(), so the no_grad of the call
    # that built it is long gone. A step that records a graph is slower and holds memory.
    model = build()
    seen = []
    hook = model.head.register_forward_hook(lambda m, i, out: seen.append(out.requires_grad))
    try:
        tokens = list(model.stream([[1, 2, 3]], max_new_tokens=4, use_cache=use_cache))
    finally:
        hook.remove()
    assert len(tokens) == 4 and len(seen) == 4
    assert not any(seen)
    assert torch.is_grad_enabled()  # and the caller's mode is back
