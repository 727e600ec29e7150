import csv
import io
import json
import math

import pytest

from multihead.analysis import HeadEntry, HeadReport


def sample():
    return HeadReport(
        {"class": "DecoderLM", "num_layers": 2},
        [
            HeadEntry(0, 0, 0, ["previous_token"], {"previous_token": 0.9, "induction": math.nan}),
            HeadEntry(1, 3, 1, [], {"positional": 0.6, "positional_offset": 2.0, "sink": 0.2}),
        ],
    )


def test_json_surface_is_exactly_the_agreed_one():
    d = json.loads(sample().to_json())
    assert set(d) == {"model", "heads"}
    assert d["heads"][0] == {
        "layer": 0,
        "head": 0,
        "kv_head": 0,
        "roles": ["previous_token"],
        "scores": {"previous_token": 0.9},
        "importance": None,
    }
    assert HeadReport.from_dict(d).to_dict() == d
    with pytest.raises(ValueError, match="needs \\['kv_head'\\]"):
        HeadReport.from_dict(
            {"model": {}, "heads": [{"layer": 0, "head": 0, "roles": [], "scores": {}}]}
        )


def test_with_importance_keeps_the_original():
    r = sample()
    r2 = r.with_importance({(1, 3): 0.25})
    assert r2.head(1, 3).importance == 0.25 and r.head(1, 3).importance is None
    assert r2.head(0, 0).importance is None
    with pytest.raises(KeyError, match="\\(1, 0\\)"):
        r.with_importance({(1, 0): 1.0})
    with pytest.raises(KeyError, match="no head 9 in layer 0"):
        r.head(0, 9)


def test_csv_and_markdown():
    r = sample().with_importance({(0, 0): 1.5})
    rows = list(csv.DictReader(io.StringIO(r.to_csv())))
    assert rows[0]["roles"] == "previous_token" and rows[0]["importance"] == "1.5"
    assert rows[0]["induction"] == "" and rows[1]["positional_offset"] == "2.0"
    md = r.to_markdown().splitlines()
    assert md[0].startswith("| layer | head | kv_head | roles |")
    assert md[3] == "| 1 | 3 | 1 | - | positional(k=2)=0.60, sink=0.20 |  |"
