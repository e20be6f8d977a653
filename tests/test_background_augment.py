"""Scale augmentation, target-free samples (inpainting) and the false-alarm loss (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nairstd.data.augment import draw_scale, rescale_mask, rescale_pair
from nairstd.data.background import inpaint_targets, target_free
from nairstd.data.dataset import AugmentConfig, IRSTDDataset, augment_pair
from nairstd.data.index import open_dataset
from nairstd.losses import false_alarm_loss
from nairstd.train.config import HASHED_WHEN_SET, TrainConfig, config_hash
from tests.conftest import write_toolbox_dataset


def _textured(h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    return (0.3 + 0.002 * xx + rng.normal(0, 0.01, (h, w))).astype(np.float32)


def test_inpaint_removes_the_target_and_keeps_the_rest():
    image = _textured()
    mask = np.zeros(image.shape, bool)
    mask[30:33, 40:43] = True
    image[mask] = 0.95  # a bright target
    out = inpaint_targets(image, mask)
    hole = np.zeros_like(mask)
    hole[26:37, 36:47] = True  # the target dilated by the margin (3 px)
    assert np.array_equal(out[~hole], image[~hole])  # nothing outside the hole changes
    # The target is gone: its pixels now match the background around it (0.3 + 0.002 x ~ 0.38).
    around = image[24:39, 34:49][~hole[24:39, 34:49]]
    assert abs(float(out[mask].mean()) - float(around.mean())) < 0.02
    assert float(out[mask].max()) < 0.5
    img2, empty = target_free(image, mask)
    assert not empty.any() and np.array_equal(img2, out)


def test_inpaint_without_targets_is_a_copy():
    image = _textured()
    out = inpaint_targets(image, np.zeros(image.shape, bool))
    assert np.array_equal(out, image) and out is not image


def test_draw_scale_stays_in_range_and_spans_it():
    rng = np.random.default_rng(0)
    draws = [draw_scale(0.5, 2.0, rng) for _ in range(400)]
    assert min(draws) >= 0.5 and max(draws) <= 2.0
    assert min(draws) < 0.6 and max(draws) > 1.7
    assert draw_scale(1.0, 1.0, rng) == 1.0


def test_rescale_keeps_small_targets():
    mask = np.zeros((64, 64), bool)
    mask[10, 10] = True  # a 1-px target that a 0.5x resize would erase
    mask[40:44, 40:44] = True
    small = rescale_mask(mask, (32, 32))
    from scipy import ndimage

    assert ndimage.label(small, np.ones((3, 3)))[1] == 2
    image, big = rescale_pair(_textured(64, 64), mask, 2.0)
    assert image.shape == big.shape == (128, 128)
    assert big[80:88, 80:88].all()


def test_dataset_defaults_sample_as_before(tmp_path):
    """Default options draw nothing extra: the samples equal the plain crop + flip pipeline."""
    index = open_dataset(write_toolbox_dataset(tmp_path, "toy", n=6, size=(40, 48)))
    aug = AugmentConfig(crop_size=32)
    ds = IRSTDDataset(index, "train", "native", train=True, augment=aug)
    for i in range(len(ds)):
        image, mask = ds.load_pair(ds.stems[i])
        rng = np.random.default_rng((0, 0, i))
        _, expected = augment_pair(image, mask, aug, rng)
        assert np.array_equal(ds[i]["mask"][0].numpy() > 0.5, expected)


def test_dataset_background_samples_are_target_free(tmp_path):
    index = open_dataset(write_toolbox_dataset(tmp_path, "toy", n=6, size=(40, 48)))
    aug = AugmentConfig(crop_size=32, background_p=1.0, scale_range=(0.5, 2.0))
    ds = IRSTDDataset(index, "train", "native", train=True, augment=aug)
    for i in range(len(ds)):
        sample = ds[i]
        assert sample["image"].shape == (1, 32, 32)
        assert float(sample["mask"].sum()) == 0.0
        # the inpainted frame no longer holds the 250-grey target
        image, _ = ds.target_free_pair(ds.stems[i])
        assert float(image.max()) < 0.5


def test_frame_stats_standardise_a_crop_as_predict_standardises_its_frame(tmp_path):
    index = open_dataset(write_toolbox_dataset(tmp_path, "toy", n=4, size=(40, 48)))
    # No rescale, no flips: the crop's pixels are a window of the frame, findable by value.
    common = dict(crop_size=16, target_crop_p=0.0, flips=False, transpose=False)
    own = IRSTDDataset(index, "train", "native", train=True, augment=AugmentConfig(**common))
    framed = IRSTDDataset(
        index, "train", "native", train=True, augment=AugmentConfig(**common, frame_stats=True)
    )
    for i, stem in enumerate(own.stems):  # textured frames: a flat crop has no std of its own
        frame = _textured(40, 48, seed=i)
        own._cache[stem] = framed._cache[stem] = (frame, np.zeros(frame.shape, bool))
        x_own, x_frame = own[i]["image"][0].numpy(), framed[i]["image"][0].numpy()
        assert abs(float(x_own.mean())) < 1e-4 and abs(float(x_own.std()) - 1) < 1e-3
        # the same crop (same draws), standardised by the whole frame's mean and std
        crop = x_frame * (frame.std() + 1e-6) + frame.mean()
        assert np.allclose((crop - crop.mean()) / (crop.std() + 1e-6), x_own, atol=1e-4)
        raw = np.lib.stride_tricks.sliding_window_view(frame, (16, 16))
        assert np.isclose(raw, crop, atol=1e-5).all(axis=(2, 3)).any()


def test_train_cli_passes_the_augmentation_options(monkeypatch):
    import nairstd.train
    from nairstd.cli import main

    seen = []

    def fake_train(config, **kwargs):
        seen.append(config)
        raise ValueError("stop here")  # printed as one error: line, exit status 2

    monkeypatch.setattr(nairstd.train, "train", fake_train)
    argv = ["train", "--profile", "smoke", "--stage", "2", "--protocol", "native"]
    argv += ["--scale", "0.5", "6", "--background-p", "0.4", "--fa-weight", "0.25"]
    assert main(argv + ["--frame-stats"]) == 2
    assert main(argv) == 2
    with_flag, without = seen
    assert (with_flag.scale_min, with_flag.scale_max, with_flag.background_p) == (0.5, 6.0, 0.4)
    assert with_flag.fa_weight == 0.25
    assert with_flag.frame_stats is True and without.frame_stats is False


def test_new_fields_keep_old_run_ids_until_set():
    base = TrainConfig()
    fields = base.hashed_fields()
    assert not set(HASHED_WHEN_SET) & set(fields)  # defaults: left out, old ids unchanged
    changes = {"scale_max": 2.0, "background_p": 0.25, "fa_weight": 1.0, "frame_stats": True}
    for name, value in changes.items():
        changed = base.replace(**{name: value}).hashed_fields()
        assert changed[name] == value
        assert config_hash(changed) != config_hash(fields)


@pytest.mark.parametrize(
    "bad", [dict(scale_min=0.0), dict(scale_min=2.0, scale_max=1.0), dict(background_p=1.5)]
)
def test_new_fields_are_checked(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_false_alarm_loss_looks_at_target_free_images_only():
    logits = torch.full((2, 1, 16, 16), -8.0)
    target = torch.zeros(2, 1, 16, 16)
    target[1, 0, 3, 3] = 1.0  # image 1 has a target: left out
    logits[1, 0, 5:9, 5:9] = 8.0  # a confident "false alarm" in the image with a target
    quiet = false_alarm_loss(logits, target)
    assert float(quiet) < 1e-3
    logits[0, 0, 0, 0:4] = 6.0  # 4 bright false pixels in the target-free image
    loud = false_alarm_loss(logits.requires_grad_(), target)
    assert float(loud.detach()) > 1.0
    loud.backward()
    assert float(logits.grad[0, 0, 0, 0]) > 0  # pushes the false pixel down
    assert float(logits.grad[1].abs().sum()) == 0.0
    none_empty = false_alarm_loss(logits, torch.ones(2, 1, 16, 16))
    assert float(none_empty.detach()) == 0.0


def test_seg_loss_without_empty_dice_skips_target_free_images():
    from nairstd.losses import bce_loss, dice_loss, seg_loss

    logits = torch.full((2, 1, 8, 8), -1.0)
    target = torch.zeros(2, 1, 8, 8)
    target[0, 0, 2, 2] = 1.0
    both = seg_loss(logits, target)
    only = seg_loss(logits, target, empty_dice=False)
    assert float(both) == pytest.approx(float(bce_loss(logits, target) + dice_loss(logits, target)))
    expected = bce_loss(logits, target) + dice_loss(logits[:1], target[:1])
    assert float(only) == pytest.approx(float(expected))


def test_pad_to_uses_the_median_grey():
    from nairstd.data.augment import pad_to

    image = np.full((20, 30), 0.6, np.float32)
    mask = np.zeros((20, 30), bool)
    mask[3, 4] = True
    big, bigmask = pad_to(image, mask, 32)
    assert big.shape == bigmask.shape == (32, 32)
    assert np.all(big == np.float32(0.6)) and bigmask.sum() == 1
    same, _ = pad_to(image, mask, 16)
    assert same is image
