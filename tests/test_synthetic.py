"""Tests of the synthetic IRSTD generator (nairstd/data/synthetic/). Small images, few of them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from nairstd.data import synthetic as syn
from nairstd.data.synthetic import (
    PRESETS,
    SyntheticConfig,
    generate_image,
    generate_images,
    image_rng,
    preset,
    write_dataset,
)
from nairstd.grid import EIGHT_CONNECTED

SMALL = SyntheticConfig(n_images=4, image_size=128, seed=7)


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    return ndimage.label(mask, structure=EIGHT_CONNECTED)


def test_same_seed_same_bytes_different_seed_differs():
    a = generate_images(SMALL)
    b = generate_images(SMALL)
    for (ia, ma, _), (ib, mb, _) in zip(a, b):
        assert ia.tobytes() == ib.tobytes()
        assert ma.tobytes() == mb.tobytes()
    c = generate_images(SMALL.replace(seed=8))
    assert all(ia.tobytes() != ic.tobytes() for (ia, _, _), (ic, _, _) in zip(a, c))
    assert any(ma.tobytes() != mc.tobytes() for (_, ma, _), (_, mc, _) in zip(a, c))


def test_image_i_independent_of_dataset_size():
    three = generate_images(SMALL.replace(n_images=3))
    five = generate_images(SMALL.replace(n_images=5))
    assert len(three) == 3 and len(five) == 5
    for (i3, m3, _), (i5, m5, _) in zip(three, five):
        assert np.array_equal(i3, i5) and np.array_equal(m3, m5)
    # image_rng(seed, i) is SeedSequence(seed).spawn(...)[i]
    spawned = np.random.default_rng(np.random.SeedSequence(7).spawn(3)[2])
    assert spawned.integers(1 << 30) == image_rng(7, 2).integers(1 << 30)


@pytest.mark.parametrize("seed", [0, 1])
def test_default_images_masks_and_info(seed):
    cfg = SyntheticConfig(seed=seed)
    for i in range(3):
        image, mask, info = generate_image(image_rng(seed, i), cfg)
        assert image.dtype == np.uint8 and image.shape == (256, 256)
        assert mask.dtype == bool and mask.shape == (256, 256)
        labels, n = _components(mask)
        targets = info["targets"]
        assert 1 <= n == len(targets) <= 5
        sizes = np.bincount(labels.ravel())[1:]
        assert sorted(sizes.tolist()) == sorted(t["area"] for t in targets)
        assert all(1 <= t["area"] <= 100 for t in targets)
        for t in targets:  # centroid lies on its component; margin from the border is kept
            r, c = (int(round(v)) for v in t["centroid"])
            assert labels[r, c] > 0
            r0, c0, r1, c1 = t["bbox"]
            assert min(r0, c0) >= cfg.border_margin and max(r1, c1) <= 256 - cfg.border_margin
            assert np.isfinite(t["scr"])
        # a reasonable 8-bit range, not a flat or saturated frame
        assert int(image.max()) - int(image.min()) >= 80
        assert image.std() > 5
        assert set(info["background"]) <= set(syn.BACKGROUND_KINDS)


def test_targets_brighter_than_surroundings():
    cfg = SMALL.replace(n_images=6, hard_negative_prob=0.0, scr_range=(6.0, 10.0))
    for image, mask, info in generate_images(cfg):
        for t in info["targets"]:
            assert t["scr"] > 2.0, info
        ring = ndimage.binary_dilation(
            mask, EIGHT_CONNECTED, iterations=6
        ) & ~ndimage.binary_dilation(mask, EIGHT_CONNECTED, iterations=2)
        assert image[mask].mean() > image[ring].mean()


def test_hard_negatives_are_not_in_the_mask():
    cfg = SMALL.replace(n_images=4, hard_negative_prob=1.0, hard_negative_count=(2, 3))
    for _, mask, info in generate_images(cfg):
        assert 2 <= len(info["hard_negatives"]) <= 3
        _, n = _components(mask)
        assert n == len(info["targets"])
        for h in info["hard_negatives"]:
            r, c = (int(round(v)) for v in h["centroid"])
            assert not mask[max(0, r - 1) : r + 2, max(0, c - 1) : c + 2].any()


def test_tiny_variant_every_component_under_20px():
    cfg = preset("synthetic-tiny", "smoke").replace(n_images=8, image_size=128)
    assert cfg.max_target_area == 20
    for _, mask, info in generate_images(cfg):
        labels, n = _components(mask)
        assert n == len(info["targets"]) >= 1
        assert np.bincount(labels.ravel())[1:].max() < 20


def test_target_count_and_area_ranges_respected():
    cfg = SMALL.replace(n_images=5, targets_per_image=(2, 3), target_area=(10.0, 40.0))
    for _, mask, _info in generate_images(cfg):
        labels, n = _components(mask)
        assert 2 <= n <= 3
        assert all(10 <= a <= 40 for a in np.bincount(labels.ravel())[1:])


def test_single_background_kinds():
    for kind in syn.BACKGROUND_KINDS:
        cfg = SMALL.replace(n_images=2, background_kinds=(kind,))
        for image, _, info in generate_images(cfg):
            assert info["background"] == [kind]
            assert int(image.max()) - int(image.min()) >= 60


def test_config_validation_and_round_trip():
    cfg = preset("synthetic-nudt", "quick")
    assert SyntheticConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError):
        SyntheticConfig(targets_per_image=(0, 3))
    with pytest.raises(ValueError):
        SyntheticConfig(background_kinds=("desert",))
    with pytest.raises(ValueError):
        SyntheticConfig(split_fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError):
        SyntheticConfig.from_dict({"n_images": 3, "bogus": 1})


def test_presets_and_profiles():
    assert set(PRESETS) == {"synthetic", "synthetic-nudt", "synthetic-tiny"}
    for name in PRESETS:
        assert PRESETS[name].description
        sizes = [preset(name, p).n_images for p in ("smoke", "quick", "paper")]
        assert sizes[0] <= 32 and sizes[0] < sizes[1] < sizes[2]
        assert preset(name, "smoke").seed == preset(name, "paper").seed
    assert preset("synthetic-nudt", "paper").n_images == 1327
    assert preset("synthetic", "smoke").image_size == 256
    with pytest.raises(KeyError):
        preset("nope", "quick")
    with pytest.raises(ValueError):
        preset("synthetic", "huge")


def _read_lines(path):
    return [s for s in path.read_text().splitlines() if s]


def test_write_dataset_layout_splits_and_noop(tmp_path):
    cfg = SMALL.replace(n_images=10, image_size=64, targets_per_image=(1, 2))
    folder = write_dataset(tmp_path, "synth", cfg)
    assert folder == tmp_path / "synth"
    stems = [f"synth_{i:05d}" for i in range(10)]
    assert sorted(p.stem for p in (folder / "images").glob("*.png")) == stems
    assert sorted(p.stem for p in (folder / "masks").glob("*.png")) == stems
    splits = {
        k: _read_lines(folder / "img_idx" / f"{k}_synth.txt") for k in ("train", "val", "test")
    }
    assert [len(splits[k]) for k in ("train", "val", "test")] == [5, 3, 2]
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == stems  # disjoint, covering
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["config"] == cfg.to_dict()
    assert meta["generator_version"] == syn.GENERATOR_VERSION
    # files on disk equal the in-memory generator; masks are 0/255
    image, mask, info = generate_image(image_rng(cfg.seed, 3), cfg)
    on_disk = np.array(Image.open(folder / "images" / "synth_00003.png"))
    mask_disk = np.array(Image.open(folder / "masks" / "synth_00003.png"))
    assert on_disk.dtype == np.uint8 and np.array_equal(on_disk, image)
    assert set(np.unique(mask_disk)) <= {0, 255} and np.array_equal(mask_disk == 255, mask)
    assert meta["images"]["synth_00003"]["target_areas"] == [t["area"] for t in info["targets"]]
    # second call: no-op
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    assert write_dataset(tmp_path, "synth", cfg) == folder
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == stamps
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]  # no temporary leftovers


def test_write_dataset_regenerates_changed_or_incomplete(tmp_path):
    cfg = SMALL.replace(n_images=4, image_size=64, targets_per_image=(1, 1))
    folder = write_dataset(tmp_path, "d", cfg)
    (folder / "masks" / "synth_00002.png").unlink()  # incomplete
    assert not syn.dataset_is_complete(folder, "d", cfg)
    write_dataset(tmp_path, "d", cfg)
    assert (folder / "masks" / "synth_00002.png").is_file()
    bigger = cfg.replace(n_images=6)  # different config
    write_dataset(tmp_path, "d", bigger)
    assert len(list((folder / "images").glob("*.png"))) == 6
    assert json.loads((folder / "meta.json").read_text())["config"]["n_images"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_interrupted_write_leaves_no_complete_looking_folder(tmp_path, monkeypatch):
    cfg = SMALL.replace(n_images=6, image_size=64, targets_per_image=(1, 1))
    calls = {"n": 0}
    real_save_png = syn.writer.save_png

    def flaky_save_png(array, path):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt("simulated crash")
        return real_save_png(array, path)

    monkeypatch.setattr(syn.writer, "save_png", flaky_save_png)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(tmp_path, "crash", cfg)
    assert not (tmp_path / "crash").exists()
    assert list(tmp_path.iterdir()) == []  # temporary folder removed as well

    # an interrupted rebuild keeps the previous (complete, other-config) dataset intact
    monkeypatch.setattr(syn.writer, "save_png", real_save_png)
    old_cfg = cfg.replace(n_images=3)
    write_dataset(tmp_path, "crash", old_cfg)
    calls["n"] = 0
    monkeypatch.setattr(syn.writer, "save_png", flaky_save_png)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(tmp_path, "crash", cfg)
    assert syn.dataset_is_complete(tmp_path / "crash", "crash", old_cfg)
    assert not syn.dataset_is_complete(tmp_path / "crash", "crash", cfg)
    monkeypatch.setattr(syn.writer, "save_png", real_save_png)
    write_dataset(tmp_path, "crash", cfg)
    assert syn.dataset_is_complete(tmp_path / "crash", "crash", cfg)


def test_stale_partial_folders_of_dead_writers_are_removed(tmp_path):
    stale = tmp_path / ".s.partial-999999999-abc"  # pid that cannot exist
    stale.mkdir()
    (stale / "junk.png").write_bytes(b"x")
    write_dataset(tmp_path, "s", SMALL.replace(n_images=3, image_size=64))
    assert not stale.exists()


def test_split_stems_small_and_seeded():
    stems = [f"s{i}" for i in range(7)]
    a = syn.split_stems(stems, (0.5, 0.3, 0.2), seed=1)
    assert a == syn.split_stems(stems, (0.5, 0.3, 0.2), seed=1)
    assert all(len(v) >= 1 for v in a.values())
    assert sorted(sum(a.values(), [])) == sorted(stems)


def test_benchmark_and_cli(capsys):
    from nairstd.bench import main as bench_main
    from nairstd.bench.synthetic import generator_rate

    assert generator_rate(n=2) > 0
    assert bench_main(["synthetic", "--n", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("synthetic generator: ") and "images/s (256x256, 1 thread)" in out
