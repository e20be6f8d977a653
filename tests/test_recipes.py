"""Each deep baseline trains with its authors' optimiser recipe by default (issue 22)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import write_toolbox_dataset

from nairstd.baselines import DEEP_BASELINES
from nairstd.train import train
from nairstd.train.config import TrainConfig
from nairstd.train.recipes import (
    RECIPES,
    Recipe,
    cosine_lambda,
    lr_factor,
    make_optimizer,
    recipe_for,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_deep_baseline_has_a_cited_official_recipe():
    assert set(RECIPES) == set(DEEP_BASELINES)
    for name, recipe in RECIPES.items():
        assert recipe.sources and all(":" in s for s in recipe.sources.values()), name
        assert recipe_for(name, "official") is recipe
        assert recipe_for(name, "common") is None
    for ours in ("na_irstd", "detector", "detector_ds2", "dense_cnn"):
        assert recipe_for(ours, "official") is None  # the paper's recipe, always
    with pytest.raises(ValueError, match="optim"):
        recipe_for("acm", "fast")
    with pytest.raises(ValueError, match="optim"):
        TrainConfig(optim="fast")


def test_optimizers_follow_the_recipes():
    params = [torch.nn.Parameter(torch.zeros(3))]

    def opt(name):
        return make_optimizer(RECIPES[name], [{"params": params, "lr": 5e-4}], 0.0)

    acm, agpc, uiu = opt("acm"), opt("agpcnet"), opt("uiunet")
    assert isinstance(acm, torch.optim.Adagrad) and acm.param_groups[0]["lr"] == 0.05
    assert acm.param_groups[0]["weight_decay"] == 1e-4
    # AGPCNet: Adagrad, the authors' from-scratch alternative (their SGD needs a pretrained
    # backbone); still their lr, weight decay and poly schedule.
    assert isinstance(agpc, torch.optim.Adagrad) and agpc.param_groups[0]["lr"] == 0.05
    assert agpc.param_groups[0]["weight_decay"] == 1e-4
    assert isinstance(uiu, torch.optim.Adam) and uiu.param_groups[0]["lr"] == 1e-3
    sgd = make_optimizer(Recipe("sgd", 0.05, momentum=0.9), [{"params": params, "lr": 5e-4}], 0.0)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9
    common = make_optimizer(None, [{"params": params, "lr": 5e-4}], 0.0)
    assert isinstance(common, torch.optim.Adam) and common.param_groups[0]["lr"] == 5e-4


def test_schedules_by_hand():
    assert lr_factor(RECIPES["acm"], 100, 10, 0.01)(57) == 1.0  # constant
    poly = lr_factor(RECIPES["agpcnet"], 100, 10, 0.01)
    assert poly(0) == 1.0 and poly(50) == pytest.approx(0.5**0.9) and poly(100) == 0.0
    restarts = lr_factor(RECIPES["isnet"], 10_000, 32, 0.01)  # T_max 30 epochs of 32 steps
    assert restarts(0) == 1.0 and restarts(31) == 1.0  # stepped per epoch
    assert restarts(30 * 32) == pytest.approx(0.0, abs=1e-12)
    assert restarts(45 * 32) == pytest.approx(0.5)
    assert restarts(60 * 32) == pytest.approx(1.0)
    common = lr_factor(None, 100, 10, 0.01)
    assert common(50) == cosine_lambda(100, 0.01)(50) == pytest.approx(0.01 + 0.99 * 0.5)
    assert math.isclose(common(100), 0.01)


@pytest.mark.parametrize(("optim", "lr"), [("official", 0.05), ("common", 5e-4)])
def test_a_baseline_run_trains_with_the_chosen_recipe(tmp_path, optim, lr):
    data = write_toolbox_dataset(tmp_path / "data", "tinyset", n=8, size=(64, 64))
    config = TrainConfig(
        model="acm",
        stage="one",
        dataset=str(data),
        crop_size=32,
        batch_size=2,
        epochs=1,
        max_steps=2,
        optim=optim,
        threads=1,
    )
    run = train(config, runs_dir=tmp_path / "runs", log=lambda _line: None)
    assert run.log["lr"].iloc[-1] == pytest.approx(lr if optim == "official" else lr * 0.01)
