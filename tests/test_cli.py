"""The command line as a user runs it: `data stats` and `score`, on real SIRST and made-up data."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import write_toolbox_dataset
from PIL import Image
from scipy import ndimage
from test_metrics_crosscheck import _ref_evaluate

from nairstd.cli import main
from nairstd.data import open_dataset


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nairstd", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.realdata
def test_data_stats_on_real_sirst(sirst_root):
    result = run_cli("data", "stats", str(sirst_root), "--json")
    assert result.returncode == 0, result.stderr
    (stats,) = json.loads(result.stdout)
    assert stats["images"] == 427
    assert stats["splits"] == {"train": 256, "val": 85, "test": 86}
    assert stats["targets"] == 533
    assert stats["masks_binary"] is True
    assert len(stats["warnings"]) == 1 and "Misc_111" in stats["warnings"][0]
    assert stats["target_area_px"]["median"] == 20.0


def test_data_stats_text_and_error(tmp_path, capsys):
    folder = write_toolbox_dataset(tmp_path, "TOY", n=5)
    assert main(["data", "stats", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "TOY" in out and "targets     5" in out
    assert main(["data", "stats", str(tmp_path / "absent")]) == 2
    assert "absent" in capsys.readouterr().err


def _perturbed_predictions(index, stems, out_dir, seed=0):
    """Predictions with misses, shifts, blobs and false alarms, as probability x 255 PNGs."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = []
    for stem in stems:
        _, gt = index.load(stem)
        pred = gt.copy()
        choice = rng.integers(4)
        if choice == 1:
            pred = ndimage.binary_dilation(pred, iterations=1)
        elif choice == 2:
            pred = np.roll(pred, int(rng.integers(-4, 5)), axis=1)
        elif choice == 3:
            pred[:] = False
        y, x = rng.integers(0, gt.shape[0] - 3), rng.integers(0, gt.shape[1] - 3)
        if rng.random() < 0.5:
            pred[y : y + 3, x : x + 3] = True  # a false alarm (or a lucky hit)
        prob = np.where(pred, rng.uniform(0.6, 1.0, gt.shape), rng.uniform(0.0, 0.45, gt.shape))
        Image.fromarray(np.round(prob * 255).astype(np.uint8)).save(out_dir / f"{stem}.png")
        pairs.append((np.round(prob * 255) / 255, gt))
    return pairs


@pytest.mark.realdata
def test_score_agrees_with_independent_implementation_on_real_masks(sirst_root, tmp_path):
    index = open_dataset(sirst_root)
    stems = index.split("test")
    pairs = _perturbed_predictions(index, stems, tmp_path / "pred")
    result = run_cli("score", "--pred", str(tmp_path / "pred"), "--data", str(sirst_root), "--json")
    assert result.returncode == 0, result.stderr
    ours = json.loads(result.stdout)
    reference = _ref_evaluate(pairs)
    for key in ("IoU", "nIoU", "Pd", "Fa"):
        assert ours[key] == pytest.approx(reference[key], rel=1e-9, abs=1e-9), key
    assert ours["n_images"] == 86 and 0 < ours["Pd"] < 100 and ours["Fa"] > 0


def test_score_errors_name_the_file(tmp_path, capsys):
    folder = write_toolbox_dataset(tmp_path, "TOY", n=4)
    pred = tmp_path / "pred"
    pred.mkdir()
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(pred / "img2.png")
    assert main(["score", "--pred", str(pred), "--data", str(folder)]) == 2
    assert "img3" in capsys.readouterr().err  # missing prediction named
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(pred / "img3.png")
    assert main(["score", "--pred", str(pred), "--data", str(folder)]) == 2
    assert "img3.png" in capsys.readouterr().err  # wrong size named


def test_score_list_file_and_perfect_prediction(tmp_path, capsys):
    folder = write_toolbox_dataset(tmp_path, "TOY", n=4)
    pred = tmp_path / "pred"
    pred.mkdir()
    for stem in ("img0", "img1"):
        Image.open(folder / "masks" / f"{stem}.png").save(pred / f"{stem}.png")
    (tmp_path / "list.txt").write_text("img0\nimg1\n")
    args = [
        "score",
        "--pred",
        str(pred),
        "--data",
        str(folder),
        "--list",
        str(tmp_path / "list.txt"),
    ]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["IoU"] == 100.0 and result["Pd"] == 100.0 and result["Fa"] == 0.0
    assert result["n_images"] == 2


def test_classical_methods_run_through_eval_and_predict(tmp_path, capsys):
    folder = write_toolbox_dataset(tmp_path, "TOY", n=4, size=(64, 64))
    assert main(["eval", "--checkpoint", "tophat", "--dataset", str(folder), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["method"] == "tophat" and result["n_images"] == 2 and result["Pd"] == 100.0
    out = tmp_path / "pred"
    code = main(
        ["predict", "--checkpoint", "mpcm", "--input", str(folder / "images"), "--output", str(out)]
    )
    assert code == 0
    written = sorted(p.name for p in out.glob("*.png"))
    assert written == [f"img{i}.png" for i in range(4)]
    assert np.asarray(Image.open(out / "img0.png")).shape == (64, 64)
    assert "img0.png" in (out / "detections.csv").read_text()
