import math

import pytest
import torch

from multihead.analysis import ROLES, RoleThresholds, assign_roles, head_roles


def test_role_names_are_the_agreed_ones():
    assert ROLES == (
        "previous_token",
        "next_token",
        "positional",
        "induction",
        "duplicate_token",
        "sink",
        "broad",
        "rare_token",
    )


def test_thresholds_are_inclusive_and_nan_gives_no_role():
    t = RoleThresholds()
    assert head_roles({"previous_token": t.previous_token}) == ["previous_token"]
    assert head_roles({"previous_token": t.previous_token - 1e-9}) == []
    assert head_roles({"induction": math.nan, "sink": 0.9}) == ["sink"]
    assert head_roles({"normalized_entropy": 0.95, "rare_token": 0.6}) == ["broad", "rare_token"]
    assert head_roles({"next_token": 0.6}, RoleThresholds(next_token=0.7)) == []


def test_content_roles_explain_a_fixed_offset():
    assert head_roles({"positional": 0.5, "induction": 0.45}) == ["induction"]
    assert head_roles({"positional": 0.5, "duplicate_token": 0.4}) == ["duplicate_token"]
    assert head_roles({"positional": 0.5}) == ["positional"]


def test_assign_roles_per_head_and_checks():
    scores = {"sink": torch.tensor([0.9, 0.1]), "offset_scores": torch.zeros(2, 5)}
    assert assign_roles(scores) == [["sink"], []]
    with pytest.raises(ValueError, match="disagree on the number of heads"):
        assign_roles({"sink": torch.zeros(2), "broad": torch.zeros(3)})
    with pytest.raises(ValueError, match="sink must be"):
        RoleThresholds(sink=1.5)
