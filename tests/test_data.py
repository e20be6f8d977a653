"""Readers, layouts, splits and the torch dataset on small hand-made files and on real SIRST."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import write_toolbox_dataset
from PIL import Image

from nairstd.data import (
    AugmentConfig,
    DataError,
    IRSTDDataset,
    find_dataset,
    open_dataset,
    read_image,
    read_mask,
)


def test_every_image_mode_becomes_float_grey(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255  # pure red -> luma 0.299
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.full((4, 5), 7, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    Image.fromarray(np.full((4, 5), 51, np.uint8)).save(tmp_path / "l.png")
    Image.fromarray(np.full((4, 5), 13107, np.uint16)).save(tmp_path / "i16.png")
    Image.fromarray(np.full((4, 5), 65535, np.uint16)).save(tmp_path / "i16.tif")
    expected = {"rgb": 0.299, "rgba": 0.299, "p": 0.299, "l": 0.2, "i16": 0.2}
    for name, value in expected.items():
        image = read_image(tmp_path / f"{name}.png")
        assert image.dtype == np.float32 and image.shape == (4, 5), name
        assert np.allclose(image, value, atol=2e-3), (name, image[0, 0])
    assert np.allclose(read_image(tmp_path / "i16.tif"), 1.0)


def test_masks_become_bool_at_half_scale(tmp_path):
    Image.fromarray(np.array([[0, 127, 128, 255]], np.uint8)).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").tolist() == [[False, False, True, True]]
    Image.fromarray(np.array([[0, 40000]], np.uint16)).save(tmp_path / "m16.png")
    assert read_mask(tmp_path / "m16.png").tolist() == [[False, True]]


def test_unreadable_file_names_it(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        read_image(bad)


def test_toolbox_layout_carves_val_from_train(tmp_path):
    folder = write_toolbox_dataset(tmp_path, "TOY", n=7)
    index = open_dataset(folder)
    assert index.layout == "toolbox"
    assert index.split("test") == ["img5", "img6"]
    train, val = index.split("train"), index.split("val")
    assert len(val) == 1 and len(train) == 4 and not set(train) & set(val)
    assert open_dataset(folder).splits == index.splits  # seeded: same every time


def test_seeded_50_30_20_split_without_lists(tmp_path):
    index = open_dataset(write_toolbox_dataset(tmp_path, "NOLIST", n=10, lists=False))
    sizes = [len(index.split(s)) for s in ("train", "val", "test")]
    assert sizes == [5, 3, 2]
    assert sorted(sum((index.split(s) for s in ("train", "val", "test")), [])) == index.stems
    assert "seeded" in index.split_source


def test_shipped_lists_are_used_for_known_dataset_names(tmp_path):
    # A NUDT-SIRST folder without img_idx/ gets the official lists that ship with the package.
    folder = tmp_path / "NUDT-SIRST"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    stems = ["000001", "000002"]
    for stem in stems:
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "images" / f"{stem}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "masks" / f"{stem}.png")
    with pytest.raises(DataError, match="not in"):
        open_dataset(folder)  # the official lists name 1327 images; only 2 are here


def test_missing_mask_and_empty_folder_are_named(tmp_path):
    folder = write_toolbox_dataset(tmp_path, "HOLE", n=4)
    (folder / "masks" / "img1.png").unlink()
    with pytest.raises(DataError, match="img1"):
        open_dataset(folder).load("img1")
    empty = tmp_path / "EMPTY"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    with pytest.raises(DataError, match="no images"):
        open_dataset(empty)
    with pytest.raises(DataError, match="not found"):
        find_dataset("no-such-dataset")


def test_mask_size_mismatch_resized_with_one_warning(tmp_path):
    folder = write_toolbox_dataset(tmp_path, "MISMATCH", n=3, size=(40, 48))
    big = np.zeros((80, 96), np.uint8)
    big[20:24, 30:34] = 255
    Image.fromarray(big).save(folder / "masks" / "img0.png")
    index = open_dataset(folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, mask = index.load("img0")
        index.load("img0")
    assert mask.shape == (40, 48) and mask[10:12, 15:17].all() and mask.sum() == 4
    assert len(caught) == 1 and "img0" in str(caught[0].message)


def test_dataset_protocols_and_augmentation(tmp_path):
    index = open_dataset(write_toolbox_dataset(tmp_path, "AUG", n=6, size=(40, 48)))
    native = IRSTDDataset(index, "test", protocol="native")
    sample = native[0]
    assert sample["image"].shape == (1, 40, 48) and sample["orig_hw"].tolist() == [40, 48]
    assert abs(float(sample["image"].mean())) < 1e-5  # standardised per image
    resized = IRSTDDataset(index, "test", protocol="resize256")
    assert resized[0]["image"].shape == (1, 256, 256)
    train = IRSTDDataset(
        index,
        "train",
        protocol="native",
        train=True,
        augment=AugmentConfig(crop_size=32, target_crop_p=1.0),
    )
    for i in range(len(train)):
        s = train[i]
        assert s["image"].shape == (1, 32, 32)
        assert s["mask"].sum() == 4  # target-centred crops keep the 2x2 target
        # Image and mask stay aligned: the brightest pixels are the target.
        assert torch.equal(s["image"][0] > s["image"].mean() + 1, s["mask"][0] > 0)
    assert torch.equal(train[1]["image"], train[1]["image"])  # repeatable for a seed and epoch


def test_invalid_protocol_rejected(tmp_path):
    index = open_dataset(write_toolbox_dataset(tmp_path, "P", n=3))
    with pytest.raises(ValueError, match="protocol"):
        IRSTDDataset(index, "test", protocol="half")


@pytest.mark.realdata
def test_real_sirst_layout_split_and_quirk(sirst_root):
    import nairstd.data.index as index_module

    index_module._warned_mismatch.clear()  # the warning is once per process; reset for this test
    index = open_dataset(sirst_root)
    assert index.layout == "sirst" and len(index.stems) == 427
    assert [len(index.split(s)) for s in ("train", "val", "test")] == [256, 85, 86]
    with pytest.warns(UserWarning, match="Misc_111"):
        image, mask = index.load("Misc_111")
    assert image.shape == mask.shape == (220, 325) and mask.any()
