"""`calibrate` (issue 23): a checkpoint's threshold set on the user's own target-free frames, as
the lowest threshold whose false targets per frame (what `predict` would report) stay within a
budget; the evidence travels in the copy and `predict` uses it."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import one_error_line, spot_frames, write_tiny_checkpoint
from PIL import Image

from nairstd import calibrate as cal
from nairstd.cli import main
from nairstd.predict import detections
from nairstd.probability import TILE
from nairstd.train.checkpoint import load_model, read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

T = cal.CALIBRATION_THRESHOLDS


def test_thresholds_run_from_0_05_to_0_99():
    assert (T[0], T[1], T[-1], len(T)) == (0.05, 0.06, 0.99, 95)


def test_component_counts_by_hand():
    # a ridge that splits in two above 0.25 (so the count rises), and a lone pixel at 0.3125
    prob = np.zeros((5, 7), np.float32)
    prob[1, 1:6] = [0.625, 0.375, 0.25, 0.375, 0.875]
    prob[4, 0] = 0.3125
    assert cal.component_counts(prob, [0.1, 0.3, 0.5, 0.7, 0.9]) == [2, 3, 2, 1, 0]
    # touching diagonally is one target (8-connected), as in predict
    diagonal = np.eye(3, dtype=np.float32)
    assert cal.component_counts(diagonal, [0.5]) == [1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_component_counts_are_predicts_detections(seed):
    """The nested count at every threshold equals the rows predict's detections would list."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    prob = ndimage.gaussian_filter(rng.random((48, 64)), 1.5).astype(np.float32)
    prob = (prob - prob.min()) / (prob.max() - prob.min())  # 0..1, many nested components
    counts = cal.component_counts(prob, T)
    assert counts == [len(detections(prob, "x", t)) for t in T]
    assert max(counts) > 3  # not a trivial map


def test_split_holdout():
    calib, held = cal.split_holdout(8, 0.25, seed=0)
    assert len(held) == 2 and sorted(calib + held) == list(range(8))
    assert cal.split_holdout(8, 0.25, seed=0) == (calib, held)  # seeded
    assert cal.split_holdout(3, 0.1) [1] != []  # fmt: skip  # at least one held out
    assert cal.split_holdout(5, 0.0) == ([0, 1, 2, 3, 4], [])
    for n, fraction in [(1, 0.5), (4, 1.0), (4, -0.1)]:
        with pytest.raises(ValueError, match="holdout"):
            cal.split_holdout(n, fraction)


def test_val_pd_at():
    points = [(0.3, 95.0), (0.5, 85.0), (0.6, 70.0)]
    assert cal.val_pd_at(points, 0.5) == {"Pd": 85.0, "how": "recorded"}
    assert cal.val_pd_at(points, 0.55)["Pd"] == pytest.approx(77.5)
    assert cal.val_pd_at(points, 0.9) == {"Pd": 70.0, "how": "at most: recorded at 0.6"}
    assert cal.val_pd_at(points, 0.1) is None and cal.val_pd_at([], 0.5) is None


# -- by hand: the probability map is the image itself ---------------------------------------
# 8-bit grey levels -> probability level/255: 20 -> 0.078 (background), 60 -> 0.235,
# 100 -> 0.392, 140 -> 0.549, 180 -> 0.706, 230 -> 0.902.
FRAMES = {
    "a.png": [(100, (5, 5)), (180, (20, 20))],
    "b.png": [(140, (10, 25))],
    "c.png": [(60, (4, 4)), (60, (4, 20)), (230, (24, 10))],
    "d.png": [],
}
# false targets per frame over the 4 frames: below 0.08 the background makes one component per
# frame; then 6, 4, 3, 2, 1, 0 targets as each level is passed.
BY_HAND = {0.05: 1.0, 0.07: 1.0, 0.08: 1.5, 0.23: 1.5, 0.24: 1.0, 0.39: 1.0, 0.40: 0.75,
           0.54: 0.75, 0.55: 0.5, 0.70: 0.5, 0.71: 0.25, 0.90: 0.25, 0.91: 0.0, 0.99: 0.0}  # fmt: skip


def write_frames(folder, frames=FRAMES, shape=(32, 32)):
    folder.mkdir(parents=True, exist_ok=True)
    for name, blobs in frames.items():
        image = np.full(shape, 20, np.uint8)
        for level, (y, x) in blobs:
            image[y : y + 2, x : x + 2] = level
        Image.fromarray(image).save(folder / name)
    return folder


@pytest.fixture
def identity(monkeypatch):
    """The 'model' returns the image as its probability map."""
    monkeypatch.setattr(cal, "predict_probability", lambda model, image, *a, **k: image)


@pytest.mark.parametrize("budget, chosen", [(0.5, 0.55), (0.6, 0.55), (0.25, 0.71), (0.0, 0.91)])
def test_lowest_threshold_within_the_budget_by_hand(tmp_path, identity, budget, chosen):
    frames = write_frames(tmp_path / "empty")
    source = write_tiny_checkpoint(tmp_path / "src.pt", top_k=3)
    result = cal.calibrate(source, [frames], tmp_path / "cal.pt", budget, device="cpu")
    assert result.threshold == chosen
    curve = {r["threshold"]: r["false_per_frame"] for r in result.calibration["curve"]}
    assert {t: curve[t] for t in BY_HAND} == BY_HAND
    ckpt = read_checkpoint(tmp_path / "cal.pt")  # weights_only
    assert (ckpt["threshold"], ckpt["protocol"]) == (chosen, "native")
    record = ckpt["calibration"]
    assert record["frames"] == 4 and record["frame_names"] == sorted(FRAMES)
    assert record["frames_sha256"] == hashlib.sha256(b"a.png\nb.png\nc.png\nd.png").hexdigest()
    assert record["false_per_frame"] == curve[chosen] <= budget
    assert record["max_false_per_frame"] == budget and record["date"][:2] == "20"
    assert record["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    source_ckpt = read_checkpoint(source)
    for key, value in source_ckpt["state_dict"].items():
        assert torch.equal(ckpt["state_dict"][key], value), key


def test_held_out_frames_over_the_budget_warn(tmp_path, identity, capsys):
    """Seed 0 holds out a.png and c.png (split_holdout(4, 0.5, 0)): b.png and d.png alone meet
    0.5 false targets per frame from 0.08 (b's one blob), where a and c raise 2 and 3."""
    assert cal.split_holdout(4, 0.5, seed=0) == ([1, 3], [0, 2])
    frames = write_frames(tmp_path / "empty")
    source = write_tiny_checkpoint(tmp_path / "src.pt", top_k=3)
    args = ["calibrate", "--checkpoint", str(source), "--background", str(frames), "--out"]
    budget = ["--max-false-per-frame", "0.5", "--holdout", "0.5"]
    assert main([*args, str(tmp_path / "c.pt"), *budget]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "2 held-out frames raise 2.500" in warnings[0]
    assert "held out 2 frames (seed 0): 2.500 false targets per frame at 0.08" in captured.out
    assert "most false targets at 0.08: c.png 3, a.png 2, b.png 1" in captured.out
    record = read_checkpoint(tmp_path / "c.pt")["calibration"]
    assert record["frame_names"] == ["b.png", "d.png"] and record["false_per_frame"] == 0.5
    assert record["holdout"]["frame_names"] == ["a.png", "c.png"]


def test_no_threshold_meets_the_budget(tmp_path, identity, capsys):
    frames = {"hot.png": [(255, (3, 3))], "cold.png": []}  # probability 1.0 passes 0.99
    write_frames(tmp_path / "empty", frames)
    source = write_tiny_checkpoint(tmp_path / "src.pt", top_k=3)
    args = ["calibrate", "--checkpoint", str(source), "--background", str(tmp_path / "empty")]
    assert main([*args, "--max-false-per-frame", "0.2", "--out", str(tmp_path / "c.pt")]) == 2
    line = one_error_line(capsys)
    assert "no threshold" in line and "fewest: 0.500, from threshold 0.08" in line
    assert not (tmp_path / "c.pt").exists()


def test_warns_when_the_budget_costs_validation_pd(tmp_path, identity, capsys):
    from nairstd.io import save_torch

    write_frames(tmp_path / "empty")
    source = write_tiny_checkpoint(tmp_path / "src.pt", top_k=3)
    ckpt = torch.load(source, weights_only=True)
    ckpt["metrics"] = {"val_sweep": [{"threshold": 0.5, "Pd": 85.0}, {"threshold": 0.6, "Pd": 70}]}
    save_torch(ckpt, source)
    args = ["calibrate", "--checkpoint", str(source), "--background", str(tmp_path / "empty")]
    assert main([*args, "--max-false-per-frame", "0.5", "--out", str(tmp_path / "c.pt")]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "threshold 0.55" in warnings[0] and "77.5 %" in warnings[0]
    # met at 0.05 already, below every recorded Pd: no warning; nor with Pd >= 80 % (0.5)
    assert main([*args, "--max-false-per-frame", "1.0", "--out", str(tmp_path / "c2.pt")]) == 0
    assert "warning:" not in capsys.readouterr().err
    ckpt["metrics"]["val_sweep"][1]["Pd"] = 80.0  # 82.5 % at 0.55
    save_torch(ckpt, source)
    assert main([*args, "--max-false-per-frame", "0.5", "--out", str(tmp_path / "c4.pt")]) == 0
    assert "warning:" not in capsys.readouterr().err
    # a checkpoint recording no Pd: a plain note instead
    plain = write_tiny_checkpoint(tmp_path / "plain.pt", top_k=3)
    args[2] = str(plain)
    assert main([*args, "--max-false-per-frame", "0.5", "--out", str(tmp_path / "c3.pt")]) == 0
    captured = capsys.readouterr()
    assert "warning:" not in captured.err and "records no validation Pd" in captured.out


@pytest.mark.parametrize(
    "extra, expect",
    [
        (["--max-false-per-frame", "-0.1"], "--max-false-per-frame must be a number >= 0"),
        (["--max-false-per-frame", "nan"], "--max-false-per-frame must be a number >= 0"),
        (["--holdout", "1.0"], "--holdout must lie in 0..1"),
        (["--background", "EMPTY"], "no image files in this folder"),
        (["--checkpoint", "tophat"], "a classical method has no checkpoint"),
        (["--background", "BROKEN"], "broken.png"),
    ],
)
def test_bad_calibrate_input_one_error_line(tmp_path, capsys, extra, expect):
    frames = write_frames(tmp_path / "empty")
    (tmp_path / "nothing").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"\x89PNG not really")
    source = write_tiny_checkpoint(tmp_path / "src.pt", top_k=3)
    places = {"EMPTY": str(tmp_path / "nothing"), "BROKEN": str(tmp_path / "bad")}
    extra = [places.get(x, x) for x in extra]
    args = ["calibrate", "--checkpoint", str(source), "--background", str(frames)]
    assert main([*args, "--out", str(tmp_path / "c.pt"), "--device", "cpu", *extra]) == 2
    assert expect in one_error_line(capsys)
    assert not (tmp_path / "c.pt").exists()


@pytest.mark.parametrize("victim", ["checkpoint", "frame"])
def test_calibrate_never_writes_over_an_input(tmp_path, capsys, victim):
    frames = write_frames(tmp_path / "empty")
    source = write_tiny_checkpoint(tmp_path / "src.pt", top_k=3)
    out = source if victim == "checkpoint" else frames / "b.png"
    before = out.read_bytes()
    args = ["calibrate", "--checkpoint", str(source), "--background", str(frames)]
    assert main([*args, "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert f"{out}: refusing to write over the input" in line and str(out) in line
    assert out.read_bytes() == before


def test_shipped_model_records_its_validation_sweep():
    from nairstd.operating import PRETRAINED, shipped_path

    ckpt = read_checkpoint(shipped_path())
    summary = json.loads((PRETRAINED / "na_irstd.json").read_text())
    points = dict(cal.recorded_val_pd(ckpt))
    assert points == {r["threshold"]: r["Pd"] for r in summary["val_sweep"]}
    assert points[ckpt["threshold"]] == ckpt["metrics"]["val_at_threshold"]["Pd"]


# -- the real model, checked against predict -------------------------------------------------


def predicted_per_frame(ckpt, files, out, capsys, *extra) -> tuple[float, str]:
    """(detections per frame, stderr) of `predict` on `files`."""
    args = ["predict", "--checkpoint", str(ckpt), "--output", str(out), *extra, "--input"]
    assert main([*args, *map(str, files)]) == 0
    err = capsys.readouterr().err
    return len(pd.read_csv(out / "detections.csv")) / len(files), err


def test_untrained_checkpoint_calibrated_and_used_by_predict(tmp_path, capsys):
    frames = spot_frames(tmp_path / "empty", 12, tiff_every_other=True)
    source = write_tiny_checkpoint(tmp_path / "src.pt", top_k=3)
    out = tmp_path / "cal.pt"
    args = ["calibrate", "--checkpoint", str(source), "--background", str(frames), "--out"]
    budget = 0.5
    rc = main([*args, str(out), "--max-false-per-frame", str(budget), "--holdout", "0.25"])
    assert rc == 0
    stdout = capsys.readouterr().out
    _, ckpt = load_model(out)
    record, threshold = ckpt["calibration"], ckpt["threshold"]
    assert f"threshold {threshold} keeps" in stdout and "held out 3 frames" in stdout
    held = record["holdout"]
    calib_files = [frames / name for name in record["frame_names"]]
    held_files = [frames / name for name in held["frame_names"]]
    assert (len(calib_files), len(held_files)) == (9, 3)
    assert not set(record["frame_names"]) & set(held["frame_names"])
    assert threshold > T[0]  # a lower threshold exists to compare with
    # predict with the calibrated checkpoint reports what calibrate counted, within the budget
    per_frame, err = predicted_per_frame(out, calib_files, tmp_path / "p1", capsys)
    assert per_frame == pytest.approx(record["false_per_frame"]) and per_frame <= budget
    assert f"threshold {threshold} from calibration on 9 target-free frames (budget 0.5" in err
    # ... and the next lower threshold breaks the budget: it is the lowest
    lower = f"{threshold - 0.01:.2f}"
    per_frame, err = predicted_per_frame(
        out, calib_files, tmp_path / "p2", capsys, "--threshold", lower
    )
    assert per_frame > budget and "from calibration" not in err
    # the held-out frames at the chosen threshold: as reported, and within the budget here
    per_frame, _ = predicted_per_frame(out, held_files, tmp_path / "p3", capsys)
    assert per_frame == pytest.approx(held["false_per_frame"]) and per_frame <= budget


def test_predict_uses_the_tile_the_threshold_was_calibrated_with(tmp_path, capsys, monkeypatch):
    """Windows change the map near their seams, so the threshold `calibrate --tile N` set holds
    for maps made with N-px windows: `predict` without --tile uses N; --tile still overrides."""
    import nairstd.predict as predict_module

    frames = spot_frames(tmp_path / "empty", 4)
    source = write_tiny_checkpoint(tmp_path / "src.pt", top_k=3)
    args = ["calibrate", "--checkpoint", str(source), "--background", str(frames), "--out"]
    assert (
        main([*args, str(tmp_path / "cal.pt"), "--max-false-per-frame", "5", "--tile", "160"]) == 0
    )
    capsys.readouterr()
    assert read_checkpoint(tmp_path / "cal.pt")["calibration"]["tile"] == 160
    seen: list[int] = []
    real = predict_module.predict_probability

    def spy(model, image, protocol, size, device, tile, **kwargs):
        seen.append(tile)
        return real(model, image, protocol, size, device, tile, **kwargs)

    monkeypatch.setattr(predict_module, "predict_probability", spy)
    files = sorted(frames.iterdir())[:1]
    for ckpt, extra, tile in [
        ("cal.pt", [], 160),
        ("cal.pt", ["--tile", "0"], 0),
        ("src.pt", [], TILE),
    ]:
        seen.clear()
        predicted_per_frame(tmp_path / ckpt, files, tmp_path / f"p{tile}", capsys, *extra)
        assert seen == [tile], (ckpt, extra)
