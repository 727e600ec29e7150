"""WeightFiles: single and sharded safetensors, read lazily; shard indexes are checked (no path
outside the directory, every tensor in the shard named); sha256 verification per file."""

import json

import pytest
import torch
from safetensors.torch import save_file

from multihead.convert.packaged import file_sha256
from multihead.convert.weights import WeightFiles


@pytest.fixture
def sharded(tmp_path):
    save_file({"a": torch.ones(2)}, tmp_path / "s1.safetensors")
    save_file({"b": torch.zeros(3, dtype=torch.bfloat16)}, tmp_path / "s2.safetensors")
    index = {"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    return tmp_path


def test_shards_are_read_by_the_index(sharded):
    files = WeightFiles(sharded)
    assert files.names == {"a", "b"} and files.dtype("b") == torch.bfloat16
    assert torch.equal(files.get("a"), torch.ones(2)) and files.shape("b") == (3,)
    digests = {f: file_sha256(sharded / f) for f in ("s1.safetensors", "s2.safetensors")}
    WeightFiles(sharded, verify=digests)
    with pytest.raises(ValueError, match="verify is one sha256 but .* has 2 shards"):
        WeightFiles(sharded, verify=digests["s1.safetensors"])
    with pytest.raises(ValueError, match=r"verify names \['other'\]"):
        WeightFiles(sharded, verify={"other": "0" * 64})


@pytest.mark.parametrize(
    ("weight_map", "message"),
    [
        ({"a": "../s1.safetensors"}, "shard entries must be file names"),
        ({"a": "s2.safetensors"}, "puts 'a' in s2.safetensors, which does not hold it"),
        ({}, "no 'weight_map'"),
    ],
)
def test_bad_indexes(sharded, weight_map, message):
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ValueError, match=message):
        WeightFiles(sharded)


def test_a_damaged_index(sharded):
    (sharded / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        WeightFiles(sharded)
