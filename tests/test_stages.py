"""The stage policies (train/stages.py) and the run checkpoint helpers (train/checkpoint.py)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from nairstd.data.images import DataError
from nairstd.train.checkpoint import read_resume_state, rng_state, set_rng_state
from nairstd.train.config import TrainConfig
from nairstd.train.stages import OneStagePolicy, Stage1Policy, Stage2Policy, policy_for


def test_each_stage_gets_its_policy():
    kinds = {s: type(policy_for(TrainConfig(stage=s))) for s in ("1", "2", "one")}
    assert kinds == {"1": Stage1Policy, "2": Stage2Policy, "one": OneStagePolicy}
    assert policy_for(TrainConfig(stage="1")).scores_only
    assert not policy_for(TrainConfig(stage="2")).scores_only


def test_selection_keys_rank_validation_results():
    s1 = policy_for(TrainConfig(stage="1"))
    # Stage 1: coverage first, then the lower score loss; a missing coverage ranks last.
    assert s1.selection_key({"coverage": 60.0, "score_loss": 0.3}) > s1.selection_key(
        {"coverage": 50.0, "score_loss": 0.1}
    )
    assert s1.selection_key({"coverage": 50.0, "score_loss": 0.1}) > s1.selection_key(
        {"coverage": 50.0, "score_loss": 0.2}
    )
    assert s1.selection_key({"coverage": float("nan")})[0] == -math.inf
    seg = policy_for(TrainConfig(stage="one"))
    assert seg.selection_key({"IoU": 40.0, "nIoU": 10.0}) > seg.selection_key(
        {"IoU": 39.0, "nIoU": 90.0}
    )
    assert seg.selection_key({"IoU": None}) == (-math.inf, -math.inf)


def test_logged_losses_per_stage():
    acc = {"loss": 1.0, "seg": 0.0, "score": 1.0, "n": 1}
    assert policy_for(TrainConfig(stage="1")).logged_losses(acc, True) == ["score"]
    assert policy_for(TrainConfig(stage="2")).logged_losses(acc, True) == ["seg"]
    assert policy_for(TrainConfig(stage="one")).logged_losses(acc, True) == ["seg", "score"]
    assert policy_for(TrainConfig(stage="one")).logged_losses(acc, False) == ["seg"]


def test_rng_state_round_trip_replays_every_generator():
    state = rng_state()
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1]) and first[2] == again[2]


def test_resume_state_is_checked(tmp_path):
    path = tmp_path / "last.pt"
    assert read_resume_state(path, 1) is None
    torch.save({"state_dict": {}}, path)
    with pytest.raises(DataError, match="not a resume state"):
        read_resume_state(path, 1)
    torch.save({"state": {}, "rng": {}, "world_size": 2}, path)
    with pytest.raises(RuntimeError, match="2 process"):
        read_resume_state(path, 1)
    assert read_resume_state(path, 2)["world_size"] == 2
