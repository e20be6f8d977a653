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
    aug = AugmentConfig(**({"crop_size": 32} | augment))
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


# --------------------------------------------------------------------------------------------------
# Model-mined hard negatives (nairstd.hardneg, TrainConfig.clutter_mined)
# --------------------------------------------------------------------------------------------------
def _two_spots_frame() -> tuple[np.ndarray, np.ndarray]:
    """A 100x120 frame, zero but for a single pixel at (20, 20) (where a model erred) and a 4x4
    block of the frame's brightest pixels at (70, 90): a 16 px crop cannot hold both."""
    image = np.zeros((100, 120), np.float32)
    image[20, 20] = 1.0
    image[70:74, 90:94] = 2.0
    return image, np.zeros(image.shape, bool)


def _crop_holds(data: IRSTDDataset, draws: int = 200) -> tuple[int, int]:
    """(crops holding only the single pixel, crops holding the bright block) over `draws`."""
    single = block = 0
    for epoch in range(draws // len(data)):
        data.epoch = epoch
        for i in range(len(data)):
            lit = int((data[i]["image"] > 0).sum())
            single += lit == 1
            block += lit > 1
    return single, block


def test_mined_centres_replace_the_brightest_pixels(dataset) -> None:
    spot = {0: np.array([[20, 20]])}
    plain = _dataset(dataset, clutter_p=1.0, clutter_frames=1, crop_size=16)
    mined = _dataset(dataset, clutter_p=1.0, clutter_frames=1, crop_size=16, clutter_mined=spot)
    for data in (plain, mined):
        data._clutter[0] = _two_spots_frame()
    single, block = _crop_holds(plain)
    assert block > 60 and single < 15  # half the crops on the brightest pixels
    single, block = _crop_holds(mined)
    assert single > 60 and block < 15  # half on the mined centre instead


def test_mined_centres_outside_the_frame_are_refused(dataset) -> None:
    data = _dataset(
        dataset, clutter_p=1.0, clutter_frames=1, clutter_mined={0: np.array([[500, 5]])}
    )
    data._clutter[0] = _two_spots_frame()
    with pytest.raises(ValueError, match="outside"):
        for epoch in range(20):
            data.epoch = epoch
            for i in range(len(data)):
                data[i]


def test_mining_keeps_false_targets_only(monkeypatch, tmp_path) -> None:
    import nairstd.probability
    from nairstd.hardneg import load_mined, mine_false_targets, write_mined

    frame = clutter_frame(TRAIN_CLUTTER, 0)
    assert frame.mask.any() and not frame.mask[18:24, 28:34].any()

    def fake(model, image, protocol, preprocessing=None):
        prob = np.where(frame.mask, 0.9, 0.0).astype(np.float32)  # every target found
        prob[20:22, 30:32] = 0.8  # one false target, peaking at (21, 31)
        prob[21, 31] = 0.95
        prob[60, 60] = 0.4  # under the threshold: not a detection
        return prob

    monkeypatch.setattr(nairstd.probability, "predict_probability", fake)
    record = mine_false_targets(None, {"model": "stub"}, frames=1, threshold=0.5)
    assert record["false_targets"] == 1 and record["per_frame"] == [1]
    assert record["centres"] == {"0": [[21, 31]]}
    path = write_mined(record, tmp_path)
    assert path.name.startswith("mined_") and load_mined(path)[0].tolist() == [[21, 31]]
    assert write_mined(record, tmp_path) == path  # named by content: same record, same name


def test_bad_mined_records_name_the_file(tmp_path) -> None:
    from nairstd.hardneg import load_mined

    with pytest.raises(ValueError, match="no such"):
        load_mined(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"centres": {"0": [[1, 2, 3]]}}')
    with pytest.raises(ValueError, match="bad.json"):
        load_mined(bad)
    bad.write_text("not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_mined(bad)


def test_clutter_mined_needs_clutter_samples_and_changes_the_run_id() -> None:
    with pytest.raises(ValueError, match="clutter_mined"):
        TrainConfig(clutter_mined="x.json")
    assert "clutter_mined" not in TrainConfig(clutter_p=0.3).hashed_fields()
    on = TrainConfig(clutter_p=0.3, clutter_mined="mined_0.json").hashed_fields()
    assert on["clutter_mined"] == "mined_0.json"
