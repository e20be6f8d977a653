"""IRSTD-Hard builder: only test images whose every target is under 20 px, at 256x256."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nairstd.data import open_dataset
from nairstd.data.hard import build_irstd_hard
from nairstd.data.stats import target_areas


def _dataset(root, name, targets_per_image):
    """Layout (b) at 256x256; image i gets square targets of the given side lengths."""
    folder = root / name
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    stems = []
    for i, sides in enumerate(targets_per_image):
        image = np.full((256, 256), 30, np.uint8)
        mask = np.zeros((256, 256), np.uint8)
        for j, side in enumerate(sides):
            y, x = 20 + 60 * j, 20 + 40 * j
            image[y : y + side, x : x + side] = 220
            mask[y : y + side, x : x + side] = 255
        stem = f"im{i}"
        Image.fromarray(image).save(folder / "images" / f"{stem}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{stem}.png")
        stems.append(stem)
    (folder / "img_idx").mkdir()
    (folder / "img_idx" / f"test_{name}.txt").write_text("\n".join(stems))
    (folder / "img_idx" / f"train_{name}.txt").write_text("")
    return open_dataset(folder)


def test_hard_keeps_only_all_small_target_test_images(tmp_path):
    # areas: im0 {16} keep; im1 {16, 25} drop (one target >= 20); im2 {} drop; im3 {4, 9} keep;
    # im4 {20} drop (not *under* 20).
    source = _dataset(tmp_path / "src", "A", [[4], [4, 5], [], [2, 3], [2]])
    (tmp_path / "src" / "A" / "masks" / "im4.png").unlink()
    mask = np.zeros((256, 256), np.uint8)
    mask[10:14, 10:15] = 255  # 4x5 = 20 px
    Image.fromarray(mask).save(tmp_path / "src" / "A" / "masks" / "im4.png")
    hard = build_irstd_hard([source], tmp_path / "out")
    assert hard.split("test") == ["A__im0", "A__im3"]
    for stem in hard.split("test"):
        image, mask = hard.load(stem)
        assert image.shape == (256, 256)
        assert target_areas(mask).max() < 20
    mtime = (hard.root / "meta.json").stat().st_mtime_ns
    again = build_irstd_hard([source], tmp_path / "out")  # idempotent: nothing rewritten
    assert (again.root / "meta.json").stat().st_mtime_ns == mtime


def test_atomic_dir_swaps_in_only_a_finished_folder(tmp_path):
    """io.atomic_dir (IRSTD-Hard and the synthetic sets): a block that fails leaves the old folder
    and no temporary one; a block that succeeds replaces it; `keep` keeps a finished one."""
    from nairstd.io import atomic_dir

    final = tmp_path / "set"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    assert (final / "old.txt").read_text() == "old"
    with atomic_dir(final, keep=lambda folder: (folder / "old.txt").is_file()) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in final.iterdir()] == ["old.txt"]
    with atomic_dir(final) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_discovery_skips_hidden_half_written_datasets(tmp_path):
    """A writer's `.NAME.partial-PID-*` folder (io.atomic_dir) has the toolbox layout while it is
    written; discovery must not pool it (into IRSTD-Hard, say) and then lose its files."""
    from nairstd.data import discover_datasets

    _dataset(tmp_path, "A", [[4]])
    _dataset(tmp_path, ".A.partial-123-abcd", [[4]])
    _dataset(tmp_path, ".ipynb_checkpoints", [[4]])
    assert [d.name for d in discover_datasets(str(tmp_path))] == ["A"]
