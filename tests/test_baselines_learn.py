"""Every deep baseline, under its authors' recipe (nairstd/train/recipes.py), learns on SIRST over
a short run: its training loss falls and its best validation IoU rises above the untrained
model's (issue 22).

The run is short so the suite stays fast: 40 optimiser steps at batch 8 on 64 px crops of SIRST
resized to 128x128, every crop centred on a target (a short run must see targets in every
batch), validated on the first 16 val images every 10 steps. Two baselines do not learn in so
few steps under their own recipes (measured, README "Baselines train with their authors'
recipes"); they are strict xfails, so the test fails the day they start to learn here and the
mark must go.
"""

from __future__ import annotations

import pytest
import torch

from nairstd.data import find_dataset
from nairstd.train import TrainConfig, train
from nairstd.train.evaluate import evaluate_model
from nairstd.zoo import build_model

STEPS = 40
VAL_IMAGES = 16
IMAGE_SIZE = 128
LOSS_FALL = 0.02  # the last logged loss at least 2 % under the first
IOU_RISE = 1.0  # the best val IoU at least 1 point above the untrained model's

SLOW_STARTERS = {
    # Measured at this short run: the summed BCE falls (2.85 -> 0.39) while every pixel is
    # predicted background (val IoU 0); at quick's 640 steps on 128 px crops it leaves the
    # collapse at step 224 and reaches val IoU 37.3.
    "uiunet": "UIU-Net predicts background everywhere for its first ~200 steps (BCE on rare targets)",
    # Adam at lr 5e-4 (recipes.py says why not its authors' 1e-4): at quick's Table III budget
    # its loss stays at ~1.0 for the first ~128 steps, then falls (0.63 by step 192, val IoU
    # 22.1 at step 256, 25.4 at 640).
    "rpcanet": "RPCANet's saturated target map keeps SoftIoU at 1.0 for its first ~128 steps",
}
BASELINES = ("acm", "dnanet", "isnet", "uiunet", "rpcanet", "agpcnet")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=SLOW_STARTERS[n]))
        if n in SLOW_STARTERS
        else n
        for n in BASELINES
    ],
)
def test_baseline_learns_on_sirst(name: str, sirst_root, tmp_path) -> None:
    index = find_dataset(str(sirst_root))
    torch.manual_seed(0)
    untrained = evaluate_model(
        build_model(name, size="tiny"),
        index,
        "val",
        image_size=IMAGE_SIZE,
        device="cpu",
        limit=VAL_IMAGES,
    )["IoU"]
    cfg = TrainConfig(
        model=name,
        stage="one",
        dataset=str(index.root),
        size="tiny",
        image_size=IMAGE_SIZE,
        crop_size=64,
        target_crop_p=1.0,
        batch_size=8,
        epochs=1000,
        epoch_steps=STEPS // 4,
        max_steps=STEPS,
        val_every=1,
        val_limit=VAL_IMAGES,
        threads=1,
        device="cpu",
        ckpt_every=1000,
    )
    log = train(cfg, runs_dir=tmp_path, log=lambda _line: None).log
    assert list(log["step"]) == [10, 20, 30, 40]
    first, last = float(log["loss"].iloc[0]), float(log["loss"].iloc[-1])
    best = float(log["val_IoU"].max())
    assert last <= (1 - LOSS_FALL) * first, f"{name}: training loss {first:.4f} -> {last:.4f}"
    assert best >= untrained + IOU_RISE, (
        f"{name}: best val IoU {best:.2f} vs {untrained:.2f} untrained"
    )
