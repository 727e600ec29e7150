"""Config validation: each bad field is named in the error, with what came and what was
expected."""

import pytest

from multihead.models import DecoderConfig, EncoderConfig


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"d_model": 30, "num_heads": 4}, "num_heads=4 does not divide d_model=30"),
        ({"num_heads": 4, "num_kv_heads": 3}, "num_kv_heads=3 does not divide num_heads=4"),
        ({"window": 0}, "window must be an integer >= 1 or None, got 0"),
        ({"d_model": 28, "num_heads": 4, "position": "rope"}, "head_dim must be even, got 7"),
        ({"d_model": 40, "rope_fraction": 0.5}, "head_dim \\* rope_fraction must be even"),
        ({"position": "xpos"}, "position must be one of"),
        ({"activation": "relu"}, "activation must be one of"),
        ({"norm": "batchnorm"}, "norm must be one of"),
        ({"dropout": 1.0}, "dropout must be a float in"),
        ({"num_layers": 0}, "num_layers must be an integer >= 1, got 0"),
        ({"backend": "cuda-magic"}, "backend must be 'auto' or one of"),
    ],
)
def test_bad_fields_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DecoderConfig(**kwargs)


def test_odd_head_dim_is_fine_without_rope():
    assert DecoderConfig(d_model=28, num_heads=4, position="alibi").head_size == 7


def test_round_trip_and_unknown_keys():
    cfg = DecoderConfig(num_kv_heads=2, window=16, activation="swiglu", norm="rmsnorm")
    assert DecoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown DecoderConfig fields \['heads'\]"):
        DecoderConfig.from_dict({"heads": 3})
    assert cfg.diff(DecoderConfig()) == [
        "num_kv_heads: 2 != None",
        "activation: 'swiglu' != 'gelu'",
        "norm: 'rmsnorm' != 'layernorm'",
        "window: 16 != None",
    ]


def test_swiglu_width_defaults_to_about_eight_thirds():
    assert DecoderConfig(d_model=96, activation="swiglu").ffn_size == 256
    assert DecoderConfig(d_model=96).ffn_size == 384


def test_encoder_pooling_is_validated():
    with pytest.raises(ValueError, match="pooling must be one of"):
        EncoderConfig(pooling="max")
