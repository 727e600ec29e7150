"""Config validation: each bad field is named in the error, with what came and what was
expected."""

import json

import pytest

from multihead.models import DecoderConfig, EncoderConfig, LayerHeads


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"d_model": 30, "num_heads": 4}, "num_heads=4 does not divide d_model=30"),
        ({"num_heads": 4, "num_kv_heads": 3}, "num_kv_heads=3 does not divide num_heads=4"),
        ({"window": 0}, "window must be a positive integer, got 0"),
        ({"d_model": 28, "num_heads": 4, "position": "rope"}, "head_dim must be even, got 7"),
        ({"d_model": 40, "rope_fraction": 0.5}, "head_dim \\* rope_fraction must be even"),
        ({"position": "xpos"}, "position must be one of"),
        ({"activation": "relu"}, "activation must be one of"),
        ({"norm": "batchnorm"}, "norm must be one of"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
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


# ---------------------------------------------------------------------- per-layer heads
def test_uniform_layers_have_every_head_and_uniform_groups():
    cfg = DecoderConfig(num_layers=2, num_heads=4, num_kv_heads=2)
    assert cfg.uniform_heads and cfg.layer_head_counts == (4, 4)
    heads = cfg.heads_of(1)
    assert (heads.query, heads.kv, heads.kv_index) == ((0, 1, 2, 3), (0, 1), None)


def test_pruned_layers_keep_original_ids_and_map_query_to_kv_heads():
    cfg = DecoderConfig(
        num_layers=3,
        d_model=96,
        num_heads=6,
        num_kv_heads=3,  # groups {0, 1}, {2, 3}, {4, 5}
        layer_heads=[[5, 0, 1], [2, 3], [0, 1, 2, 3, 4, 5]],
        layer_kv_heads=[[2, 0], [1], [0, 1, 2]],
    )
    assert not cfg.uniform_heads and cfg.layer_head_counts == (3, 2, 6)
    # Query head 5 uses KV head 5 // 2 = 2, kept first; heads 0, 1 use KV head 0, kept second.
    assert cfg.heads_of(0).kv_index == (0, 1, 1)
    assert cfg.heads_of(1).kv_index is None  # one group of two: uniform again
    assert cfg.heads_of(2).kv_index is None
    # Without layer_kv_heads the kept KV heads are the ones the query heads use, in the order
    # of their first query head.
    derived = DecoderConfig(
        num_layers=1, d_model=96, num_heads=6, num_kv_heads=3, layer_heads=[[5, 0, 1]]
    )
    assert derived.heads_of(0).kv == (2, 0) and derived.heads_of(0).kv_index == (0, 1, 1)
    reordered = DecoderConfig(num_layers=1, num_heads=4, layer_heads=[[3, 0, 2]])
    assert reordered.heads_of(0) == LayerHeads((3, 0, 2), (3, 0, 2), None)
    assert DecoderConfig(num_layers=1, layer_heads=[[]]).heads_of(0).num_q == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"layer_heads": [[0, 1]]}, ValueError, r"layer_heads has 1 entries but num_layers=2"),
        ({"layer_heads": [[0], [4]]}, ValueError, r"layer_heads\[1\]=\[4\] has ids \[4\] out of"),
        ({"layer_heads": [[0, 0], [1]]}, ValueError, r"layer_heads\[0\]=\[0, 0\] repeats .*\[0\]"),
        ({"layer_heads": [[0], [-1]]}, ValueError, r"layer_heads\[1\] entries must be .* >= 0"),
        ({"layer_heads": [[0], [True]]}, TypeError, r"layer_heads\[1\] entries must be an int"),
        ({"layer_heads": [[0], "01"]}, TypeError, r"layer_heads\[1\] must be a sequence"),
        ({"layer_heads": 3}, TypeError, "layer_heads must be None or a sequence of 2"),
        (
            {"layer_heads": [[0, 2], [1]], "layer_kv_heads": [[0], [0]]},
            ValueError,
            r"layer_kv_heads\[0\]=\[0\] drops KV heads \[1\] that kept query heads",
        ),
        (
            {"layer_heads": [[0], [1]], "layer_kv_heads": [[0, 1], [0]]},
            ValueError,
            r"layer_kv_heads\[0\]=\[0, 1\] keeps KV heads \[1\] that no kept query head",
        ),
        ({"layer_kv_heads": [[0, 2], [0]]}, ValueError, r"layer_kv_heads\[0\].* out of range"),
    ],
)
def test_bad_per_layer_heads_are_named(kwargs, error, message):
    base = {"num_layers": 2, "num_heads": 4, "num_kv_heads": 2}
    with pytest.raises(error, match=message):
        DecoderConfig(**{**base, **kwargs})


def test_heads_of_rejects_a_layer_out_of_range():
    with pytest.raises(ValueError, match=r"layer must be in \[0, num_layers=2\), got 2"):
        DecoderConfig(num_layers=2).heads_of(2)


def test_uniform_configs_serialize_as_before_and_old_dicts_still_load():
    cfg = DecoderConfig(num_kv_heads=2, window=16)
    data = cfg.to_dict()
    # The keys a checkpoint's config.json held before per-layer heads existed, exactly.
    assert sorted(data) == sorted(
        [
            "vocab_size",
            "max_seq_len",
            "d_model",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "ffn_dim",
            "activation",
            "norm",
            "norm_eps",
            "bias",
            "position",
            "rope_base",
            "rope_fraction",
            "rope_interleaved",
            "window",
            "dropout",
            "attn_dropout",
            "backend",
            "tie_embeddings",
        ]
    )
    assert DecoderConfig.from_dict(data) == cfg


def test_pruned_configs_round_trip_through_json():
    cfg = EncoderConfig(num_layers=2, num_heads=4, layer_heads=[[3, 1], [0]])
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["layer_heads"] == [[3, 1], [0]] and "layer_kv_heads" not in data
    back = EncoderConfig.from_dict(data)
    assert back == cfg and back.layer_heads == ((3, 1), (0,))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"bias": 1}, TypeError, r"bias must be a bool \(True or False\), got 1 \(int\)"),
        ({"tie_embeddings": "yes"}, TypeError, "tie_embeddings must be a bool"),
        ({"num_heads": 2.0}, TypeError, r"num_heads must be an integer >= 1, got 2.0 \(float\)"),
        ({"norm_eps": 0.0}, ValueError, "norm_eps must be a finite number > 0, got 0.0"),
        ({"rope_base": float("nan")}, ValueError, "rope_base must be a finite number > 1"),
        ({"rope_fraction": 1.5}, ValueError, r"rope_fraction must be a finite number in \(0, 1\]"),
        ({"window": True}, ValueError, "window must be a positive integer, got True"),
    ],
)
def test_fields_use_the_shared_checks(kwargs, error, message):
    with pytest.raises(error, match=message):
        DecoderConfig(**kwargs)


def test_pretrained_architecture_fields_round_trip_and_are_omitted_at_their_defaults():
    cfg = EncoderConfig(
        norm_placement="post",
        embedding_norm=True,
        type_vocab_size=2,
        qkv_bias=True,
        out_bias=False,
        mlp_bias=False,
        pooling="pooler",
        position="rope",
        rope_scaling={"kind": "llama3", "factor": 8.0, "original_max_len": 64},
    )
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["rope_scaling"] == {
        "kind": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_len": 64,
    }
    assert EncoderConfig.from_dict(data) == cfg
    assert (cfg.has_qkv_bias, cfg.has_out_bias, cfg.has_mlp_bias) == (True, False, False)
    defaults = EncoderConfig().to_dict()
    for name in (
        "norm_placement",
        "embedding_norm",
        "type_vocab_size",
        "qkv_bias",
        "out_bias",
        "mlp_bias",
        "rope_scaling",
    ):
        assert name not in defaults


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"norm_placement": "sandwich"}, ValueError, r"norm_placement must be one of \('pre'"),
        ({"type_vocab_size": -1}, ValueError, "type_vocab_size must be an integer >= 0"),
        ({"qkv_bias": 1}, TypeError, "qkv_bias must be a bool"),
        ({"embedding_norm": None}, TypeError, "embedding_norm must be a bool"),
        ({"rope_scaling": {"kind": "yarn", "factor": 2.0}}, ValueError, "kind must be one of"),
        ({"rope_scaling": {"kind": "linear", "factor": 0.5}}, ValueError, "factor must be"),
        (
            {"rope_scaling": {"kind": "linear", "factor": 2, "original_max_len": 8}},
            ValueError,
            "'linear' takes only factor",
        ),
        ({"rope_scaling": {"factor": 2.0}}, ValueError, "must have 'kind' and 'factor'"),
        ({"rope_scaling": 2.0}, TypeError, "rope_scaling must be None, a RopeScaling"),
        (
            {"rope_scaling": {"kind": "linear", "factor": 2.0}, "position": "alibi"},
            ValueError,
            "rope_scaling is set but position='alibi'",
        ),
        (
            {"rope_scaling": {"kind": "llama3", "factor": 8.0, "low_freq_factor": 4.0}},
            ValueError,
            "high_freq_factor must be a finite number > 4",
        ),
    ],
)
def test_pretrained_architecture_fields_are_validated(kwargs, error, message):
    with pytest.raises(error, match=message):
        DecoderConfig(**kwargs)


def test_ffn_dim_zero_means_attention_only_and_negative_is_refused():
    cfg = DecoderConfig(d_model=32, num_heads=4, ffn_dim=0)
    assert cfg.ffn_size == 0 and cfg.attention_only
    assert not DecoderConfig(d_model=32, num_heads=4).attention_only
    assert DecoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="ffn_dim must be an integer >= 0, got -1"):
        DecoderConfig(ffn_dim=-1)


def test_drophead_reaches_every_attention_layer_and_round_trips():
    from multihead.models import DecoderLM

    cfg = DecoderConfig(vocab_size=16, d_model=16, num_layers=2, num_heads=2, drophead=0.25)
    assert [b.attn.drophead for b in DecoderLM(cfg).blocks] == [0.25, 0.25]
    assert DecoderConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert "drophead" not in DecoderConfig().to_dict()  # old config files stay as they were
    with pytest.raises(ValueError, match=r"drophead must be in \[0, 1\)"):
        DecoderConfig(drophead=1.0)
