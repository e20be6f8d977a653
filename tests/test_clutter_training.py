"""Training on generated clutter frames (TrainConfig.clutter_p, issue 23): samples from the
training clutter set, crops on targets or on the brightest structure ends, the other samples
unchanged, and a run that trains with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nairstd.data import find_dataset
from nairstd.data.dataset import AugmentConfig, IRSTDDataset, random_crop
from nairstd.data.synthetic.clutter import CLUTTER_PRESETS, TRAIN_CLUTTER, clutter_frame
from nairstd.protocols import NATIVE
from nairstd.train import TrainConfig, train
from nairstd.train.config import config_hash


def _dataset(root, **augment) -> IRSTDDataset:
    aug = AugmentConfig(crop_size=32, **augment)
    return IRSTDDataset(find_dataset(str(root)), "train", protocol=NATIVE, train=True, augment=aug)


def test_training_clutter_is_not_a_check_set() -> None:
    # The OOD check's clutter frames must never be trained on: another seed.
    assert TRAIN_CLUTTER.seed not in {p.config.seed for p in CLUTTER_PRESETS.values()}


def test_random_crop_centres_hold_the_chosen_pixel() -> None:
    image = np.zeros((100, 120), np.float32)
    mask = np.zeros((100, 120), bool)
    mask[5, 5] = True  # a target elsewhere: centres override it
    centres = np.zeros_like(mask)
    centres[70, 90] = True
    for seed in range(20):
        image[:] = 0
        image[70, 90] = 1.0
        crop, _ = random_crop(image, mask, 16, 1.0, np.random.default_rng(seed), centres=centres)
        assert crop.shape == (16, 16) and crop.max() == 1.0


def test_clutter_samples_come_from_the_training_clutter_set(dataset) -> None:
    data = _dataset(dataset, clutter_p=1.0, clutter_frames=1, target_crop_p=1.0)
    frame = clutter_frame(TRAIN_CLUTTER, 0)
    assert frame.mask.any()  # frame 0 holds targets: target-centred crops must show them
    for i in range(len(data)):
        sample = data[i]
        assert sample["stem"] == "clutter_00000"
        assert sample["image"].shape == (1, 32, 32) and sample["image"].dtype == torch.float32
        assert torch.isfinite(sample["image"]).all()
        assert sample["mask"].sum() > 0  # target_crop_p = 1 and the frame has targets
    again = _dataset(dataset, clutter_p=1.0, clutter_frames=1, target_crop_p=1.0)
    assert torch.equal(again[0]["image"], data[0]["image"])  # repeatable per seed and epoch


def test_samples_that_stay_on_the_dataset_are_unchanged(dataset) -> None:
    plain = _dataset(dataset)
    mixed = _dataset(dataset, clutter_p=0.5, clutter_frames=1)
    stems, kept = [], 0
    for epoch in range(3):
        plain.epoch = mixed.epoch = epoch
        for i in range(len(plain)):
            sample = mixed[i]
            stems.append(sample["stem"])
            if not sample["stem"].startswith("clutter_"):
                kept += 1
                assert torch.equal(sample["image"], plain[i]["image"])
                assert torch.equal(sample["mask"], plain[i]["mask"])
    assert kept and kept < len(stems)  # both kinds drawn


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_clutter_p_out_of_range_is_refused(bad) -> None:
    with pytest.raises(ValueError, match="clutter_p"):
        TrainConfig(clutter_p=bad)


def test_default_config_hash_ignores_the_new_fields() -> None:
    # Runs cached before clutter_p existed keep their ids (HASHED_WHEN_SET).
    on = TrainConfig(clutter_p=0.3).hashed_fields()
    off = TrainConfig().hashed_fields()
    assert "clutter_p" not in off and "clutter_frames" not in off
    assert config_hash(on) != config_hash(off)


def test_a_run_trains_with_clutter_samples(dataset, tmp_path) -> None:
    config = TrainConfig(
        model="detector",
        stage="one",
        dataset=str(dataset),
        protocol=NATIVE,
        crop_size=32,
        batch_size=2,
        epochs=1,
        max_steps=2,
        clutter_p=0.5,
        clutter_frames=1,
        threads=1,
    )
    run = train(config, runs_dir=tmp_path / "runs", log=lambda _line: None)
    assert len(run.log) == 1 and np.isfinite(run.log["loss"].iloc[-1])
