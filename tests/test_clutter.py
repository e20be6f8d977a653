"""The clutter proxy (issue 23): deterministic frames of the right sizes and bit depths, empty
masks without targets, every target inside its mask, the sets on disk equal to the frames the OOD
check draws in memory, and the OOD check, `data clutter` and `shipped --update-ood` using them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_toolbox_dataset
from scipy import ndimage
from torch import nn

from nairstd.cli import main
from nairstd.data import open_dataset, read_image, read_mask
from nairstd.data.synthetic.clutter import (
    CLUTTER_PRESETS,
    ClutterConfig,
    ClutterPreset,
    clutter_config,
    clutter_frame,
)
from nairstd.data.synthetic.draw import Canvas
from nairstd.data.synthetic.sensor import SensorConfig
from nairstd.data.synthetic.structures import KIND
from nairstd.data.synthetic.writer import write_clutter_set
from nairstd.grid import EIGHT_CONNECTED

SMALL = ((64, 80), (96, 128), (72, 96))  # (H, W): a few ms a frame


@pytest.fixture
def small_sets(monkeypatch):
    """Both clutter presets at small sizes (same seeds and everything else)."""
    for name, p in list(CLUTTER_PRESETS.items()):
        config = ClutterConfig(**{**p.config.__dict__, "sizes": SMALL})
        monkeypatch.setitem(CLUTTER_PRESETS, name, ClutterPreset(p.description, config))


class Ramp(nn.Module):
    """A fixed 'model': logit = standardised input (brighter pixels, higher probability)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x * self.scale


def test_presets_cycle_the_three_sizes_then_the_bit_depths():
    config = clutter_config("synthetic-clutter")
    formats = [config.frame_format(i) for i in range(6)]
    assert formats == [
        ((512, 640), 8),
        ((1024, 1280), 8),
        ((1080, 1920), 8),
        ((512, 640), 16),
        ((1024, 1280), 16),
        ((1080, 1920), 16),
    ]
    assert clutter_config("synthetic-clutter").targets == (0, 0)
    assert clutter_config("synthetic-clutter-targets").targets[0] >= 1
    with pytest.raises(KeyError):
        clutter_config("clutter")


def test_a_real_size_frame_has_its_size_and_dtype():
    frame = clutter_frame(clutter_config("synthetic-clutter"), 0)
    assert frame.image.shape == frame.mask.shape == frame.kind.shape == (512, 640)
    assert frame.image.dtype == np.uint8 and not frame.mask.any()
    assert frame.info["scene"] in ("road", "urban", "skyline")
    assert (frame.kind != KIND["sky"]).any() and (frame.kind == KIND["sky"]).any()


def test_same_config_same_bytes_and_frames_independent_of_each_other():
    config = ClutterConfig(seed=5, sizes=SMALL, targets=(1, 3))
    a, b = clutter_frame(config, 4), clutter_frame(config, 4)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert a.info == b.info
    assert not np.array_equal(clutter_frame(config, 1).image, clutter_frame(config, 7).image)
    other = clutter_frame(ClutterConfig(seed=6, sizes=SMALL, targets=(1, 3)), 4)
    assert not np.array_equal(a.image, other.image)


@pytest.mark.parametrize("index", range(6))
def test_sizes_bit_depths_and_empty_masks_without_targets(index):
    config = ClutterConfig(seed=11, sizes=SMALL)
    frame = clutter_frame(config, index)
    (h, w), bits = config.frame_format(index)
    assert frame.image.shape == (h, w)
    assert frame.image.dtype == (np.uint8 if bits == 8 else np.uint16)
    assert not frame.mask.any() and frame.info["targets"] == []
    assert frame.as_float().dtype == np.float32
    assert 0.0 <= frame.as_float().min() <= frame.as_float().max() <= 1.0


@pytest.mark.parametrize("index", range(6))
def test_every_target_lies_inside_its_own_mask_component(index):
    config = ClutterConfig(seed=12, sizes=SMALL, targets=(1, 4))
    frame = clutter_frame(config, index)
    targets = frame.info["targets"]
    assert 1 <= len(targets) <= 4
    labels, n = ndimage.label(frame.mask, EIGHT_CONNECTED)
    assert n == len(targets)  # one component per target, none merged
    seen = set()
    for t in targets:
        r, c = (int(round(v)) for v in t["centroid"])
        assert frame.mask[r, c], t
        seen.add(labels[r, c])
        assert 2 <= t["area"] <= 9 and t["area"] == int((labels == labels[r, c]).sum())
        r0, c0, r1, c1 = t["bbox"]
        assert frame.mask[r0:r1, c0:c1].sum() == t["area"]
        assert t["where"] in ("sky", "clutter") and t["snr"] > 0
    assert len(seen) == len(targets)


def test_targets_go_both_in_the_sky_and_among_the_clutter():
    config = ClutterConfig(seed=13, sizes=SMALL, targets=(3, 4))
    where = {t["where"] for i in range(6) for t in clutter_frame(config, i).info["targets"]}
    assert where == {"sky", "clutter"}


def test_hot_pixels_dead_pixels_and_stuck_ones_at_full_scale():
    sensor = SensorConfig(hot_pixels=2e-3, dead_pixels=2e-3)
    for index, full in ((0, 255), (3, None)):  # an 8-bit and a 16-bit frame
        frame = clutter_frame(ClutterConfig(seed=3, sizes=SMALL, sensor=sensor), index)
        info = frame.info["sensor"]
        assert info["hot_pixels"] and info["dead_pixels"]
        for r, c in info["dead_pixels"]:
            assert frame.image[r, c] == 0 and frame.kind[r, c] == KIND["dead_pixel"]
        for r, c in info["stuck_hot"]:
            assert frame.image[r, c] == (full or frame.image.max())


def test_canvas_covers_sub_pixel_shapes_by_their_area():
    cv = Canvas(np.zeros((8, 8), np.float32))
    cv.box(2.0, 3.0, 2.25, 2.75, 1.0, kind=3)  # half a pixel wide
    assert cv.value[2, 2] == pytest.approx(0.5) and cv.kind[2, 2] == 3
    cv.segment((5.5, 1.0), (5.5, 7.0), 0.3, 1.0)  # a 0.3 px wire
    assert cv.value[5, 3] == pytest.approx(0.3)
    cv.ellipse(1.0, 6.0, 0.25, 0.25, 1.0)  # much smaller than a pixel: dims it
    assert 0.0 < cv.value.max() <= 1.0


def test_a_written_set_reads_back_as_the_frames_the_check_draws(tmp_path, small_sets):
    from nairstd.ood import clutter_frames

    folder = write_clutter_set(tmp_path, "synthetic-clutter-targets", 6)
    index = open_dataset(folder)
    assert index.split("train") == [] and index.split("val") == []
    stems = index.split("test")
    assert len(stems) == 6
    memory = clutter_frames("synthetic-clutter-targets", 6)
    depths = set()
    for stem, (image, mask) in zip(stems, memory):
        disk = read_image(folder / "images" / f"{stem}.png")
        assert np.array_equal(disk, image)
        assert np.array_equal(read_mask(folder / "masks" / f"{stem}.png"), mask) and mask.any()
        depths.add(json.loads((folder / "meta.json").read_text())["frames"][stem]["bits"])
    assert depths == {8, 16}
    before = (folder / "meta.json").stat().st_mtime_ns
    assert write_clutter_set(tmp_path, "synthetic-clutter-targets", 6) == folder  # no-op
    assert (folder / "meta.json").stat().st_mtime_ns == before


def test_data_clutter_command(tmp_path, small_sets, capsys):
    out = tmp_path / "ood"
    assert main(["data", "clutter", "--frames", "2", "--out", str(out)]) == 0
    for name in CLUTTER_PRESETS:
        assert len(list((out / name / "images").glob("*.png"))) == 2
    masks = [read_mask(p) for p in (out / "synthetic-clutter" / "masks").glob("*.png")]
    assert not any(m.any() for m in masks)
    assert main(["data", "clutter", "nosuch", "--out", str(out)]) == 2
    assert "unknown clutter set" in capsys.readouterr().err


def test_ood_check_includes_the_clutter_sets(tmp_path, monkeypatch, small_sets):
    from nairstd import ood

    monkeypatch.setattr(ood, "SIZES", {"64x48": (48, 64)})
    counts = {"native": 2, "64x48": 1, "synthetic-clutter": 3, "synthetic-clutter-targets": 3}
    monkeypatch.setattr(ood, "frame_counts", lambda profile: counts)
    index = open_dataset(write_toolbox_dataset(tmp_path, "TOY", n=4))
    rows = ood.ood_check(Ramp(), index, "smoke", threshold=0.9)
    names = [r["set"] for r in rows]
    assert names == ["test", "empty-native", "empty-64x48"] + list(ood.CLUTTER_SETS)
    free, targets = rows[-2], rows[-1]
    assert free["size"] == targets["size"] == ood.MIXED and free["frames"] == 3
    assert free["targets"] == 0 and np.isnan(free["Pd"])
    assert targets["targets"] > 0 and 0.0 <= targets["Pd"] <= 100.0
    for row in (free, targets):
        assert set(ood.COLUMNS) == set(row) | {"set", "size"}
        assert 0.0 <= row["frames_with_false"] <= 1.0
        if row["fa_per_frame"]:
            assert row["false_area_median"] >= 1 and 0.9 < row["false_peak_median"] <= 1.0
    # Only the clutter sets: no dataset needed.
    only = ood.ood_check(Ramp(), None, "smoke", 0.9, only=["synthetic-clutter"])
    assert [r["set"] for r in only] == ["synthetic-clutter"] and only[0] == free


def test_smoke_profile_scores_one_frame_of_each_clutter_set():
    from nairstd.ood import CLUTTER_SETS, frame_counts

    for profile in ("smoke", "quick", "paper"):
        counts = frame_counts(profile)
        assert all(counts[name] >= 1 for name in CLUTTER_SETS)
    assert frame_counts("quick")["synthetic-clutter"] % 6 == 0  # every size x bit depth alike


def test_shipped_update_ood_merges_rows_and_rewrites_the_card(tmp_path, small_sets, monkeypatch):
    from nairstd import ood, shipped

    monkeypatch.setattr(
        ood,
        "frame_counts",
        lambda profile: {"synthetic-clutter": 1, "synthetic-clutter-targets": 1},
    )
    model = Ramp()
    (tmp_path / "ramp.pt").write_bytes(b"weights: never rewritten")
    monkeypatch.setattr(
        "nairstd.train.checkpoint.load_model", lambda path: (model, {"path": str(path)})
    )
    old = {"set": "test", "size": "native", "frames": 2, "targets": 2, "Pd": 50.0, "Fa": 1.0,
           "fa_per_frame": 0.5}  # fmt: skip
    info = {
        "name": "ramp",
        "run_id": "r",
        "commit": "c",
        "date": "d",
        "command": "x",
        "protocol": "native",
        "threshold": 0.9,
        "threshold_rule": "rule",
        "dataset": {"name": "TOY", "train": 1, "val": 1, "test": 1},
        "config": {
            "init_from": "/a/b/best.pt",
            "model": "ramp",
            "size": "tiny",
            "stage": "one",
            "max_steps": 1,
            "batch_size": 1,
            "crop_size": 8,
            "scale_min": 1,
            "scale_max": 1,
            "target_crop_p": 0,
            "background_p": 0,
            "fa_weight": 0,
            "lr_main": 0,
            "seed": 0,
        },  # fmt: skip
        "val_at_threshold": {"Pd": 1.0, "Fa": 1.0, "fa_per_frame": 1.0},
        "test_at_threshold": {"IoU": 1.0, "Pd": 1.0, "Fa": 1.0, "fa_per_frame": 1.0},
        "ood_quick": [old],
    }
    (tmp_path / "ramp.json").write_text(json.dumps(info))
    rows = shipped.update_ood(["ramp"], ["synthetic-clutter"], tmp_path)
    assert [r["set"] for r in rows] == ["synthetic-clutter"]
    saved = json.loads((tmp_path / "ramp.json").read_text())["ood_quick"]
    assert [r["set"] for r in saved] == ["test", "synthetic-clutter"] and saved[0] == old
    assert (tmp_path / "ramp.pt").read_bytes() == b"weights: never rewritten"
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "| synthetic-clutter | mixed | 1 |" in card and "| test | native | 2 | 50.00 |" in card


def test_notebook_05_tables_show_the_clutter_sets(tmp_path, monkeypatch, small_sets):
    """Notebook 05's OOD table (every method incl. the shipped ones) at a smoke size."""
    from nairstd import ood
    from nairstd.reproduce import operating_points

    monkeypatch.setattr(ood, "SIZES", {"64x48": (48, 64)})
    counts = {"native": 2, "64x48": 1, "synthetic-clutter": 2, "synthetic-clutter-targets": 2}
    monkeypatch.setattr(ood, "frame_counts", lambda profile: counts)
    monkeypatch.setattr(operating_points, "OOD_CLASSICAL", ("tophat",))
    index = open_dataset(write_toolbox_dataset(tmp_path, "TOY", n=4))
    tables, figures = tmp_path / "tables", tmp_path / "figures"
    figures.mkdir()
    _, rows, _ = operating_points.operating_points("smoke", {}, index, tables, figures, ["tophat"])
    assert set(rows["method"]) >= {"Top-Hat", "Na-IRSTD (shipped)"}
    assert set(rows["set"]) == {"test", "empty-native", "empty-64x48", *ood.CLUTTER_SETS}
    table = (tables / "ood_check.md").read_text()
    for column in ("synthetic-clutter FT/frame", "synthetic-clutter % frames with FT",
                   "synthetic-clutter-targets Pd", "synthetic-clutter-targets FT/frame"):  # fmt: skip
        assert column in table, column
    assert "synthetic-clutter-targets % frames" not in table  # target-free sets only
    assert "median peak" in (tables / "ood_false_targets.md").read_text()


def test_notebook_05_passes_in_workers_match_one_process(tmp_path, monkeypatch, small_sets):
    """The OOD passes spread over worker processes give the very rows one process gives."""
    from nairstd import ood
    from nairstd.reproduce import operating_points

    monkeypatch.setattr(ood, "SIZES", {"64x48": (48, 64)})
    counts = {"native": 2, "64x48": 1, "synthetic-clutter": 2, "synthetic-clutter-targets": 2}
    monkeypatch.setattr(ood, "frame_counts", lambda profile: counts)
    index = open_dataset(write_toolbox_dataset(tmp_path, "TOY", n=4))
    out = {}
    for workers in (1, 2):
        tables, figures = tmp_path / f"tables{workers}", tmp_path / f"figures{workers}"
        figures.mkdir()
        out[workers] = operating_points.operating_points(
            "smoke", {}, index, tables, figures, ["tophat", "pstnn"], workers=workers
        )
    pd.testing.assert_frame_equal(out[1][0], out[2][0])  # the Pd-Fa sweep
    pd.testing.assert_frame_equal(out[1][1], out[2][1])  # the OOD rows
    rows = out[2][1]
    assert set(rows.loc[rows["method"] == "PSTNN", "set"]) == {"test"}  # classical: test only
    assert set(rows.loc[rows["method"] == "Top-Hat", "set"]) > {"test"}  # tophat: every set
