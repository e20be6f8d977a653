"""`calibrate --finetune` (issue 23): a short hard-negative fine-tune on the user's target-free
frames with labelled targets replayed, calibrated on the fine-tune frames and checked on held-out
frames and the replay dataset's val split. Tiny model, 64x80 frames, 32 px crops, a few steps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import one_error_line, spot_frames, write_toolbox_dataset
from PIL import Image

from nairstd import finetune as ft
from nairstd.cli import main
from nairstd.data.index import open_dataset
from nairstd.io import save_torch
from nairstd.train.checkpoint import load_model, model_checkpoint, read_checkpoint
from nairstd.train.config import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

CROP = 32


def tiny_checkpoint(path, **config):
    """A seeded, untrained na_irstd tiny checkpoint recording a Stage-2 training config with
    32 px crops, batch 4 (2 negatives + 2 replay) and the false-alarm loss on."""
    from nairstd.zoo import build_model

    torch.manual_seed(0)
    model = build_model("na_irstd", "tiny", top_k=3)
    settings = dict(model="na_irstd", stage="2", protocol="native", crop_size=CROP, batch_size=4)
    cfg = TrainConfig(**{**settings, "fa_weight": 0.25, "top_k": 3, **config})
    save_torch(
        model_checkpoint(model, "na_irstd", "tiny", {"top_k": 3}, config=cfg.to_dict()), path
    )
    return path


@pytest.fixture
def setup(tmp_path):
    """(checkpoint, frames folder, replay dataset folder) in tmp_path."""
    source = tiny_checkpoint(tmp_path / "src.pt")
    frames = spot_frames(tmp_path / "empty", 8)
    replay = write_toolbox_dataset(tmp_path / "data", "replayset", n=6, size=(48, 48))
    return source, frames, replay


def finetune_args(source, frames, replay, out, *extra):
    return [
        "calibrate", "--checkpoint", str(source), "--background", str(frames), "--out", str(out),
        "--finetune", "--replay", str(replay), "--device", "cpu", *extra,
    ]  # fmt: skip


# -- (a) end to end through the CLI ---------------------------------------------------------
def test_finetune_end_to_end_and_predict_uses_it(setup, tmp_path, capsys):
    source, frames, replay = setup
    out = tmp_path / "tuned.pt"
    args = finetune_args(source, frames, replay, out, "--finetune-steps", "3")
    assert main([*args, "--max-false-per-frame", "3"]) == 0
    captured = capsys.readouterr()
    assert "finetune: step 3/3 loss" in captured.err
    assert "fine-tuned 3 steps" in captured.out and "before the fine-tune" in captured.out
    assert "replayset val (1 images) at" in captured.out
    model, ckpt = load_model(out)  # weights_only, rebuilds
    record = ckpt["calibration"]
    tune = record["finetune"]
    assert ckpt["threshold"] == record["threshold"] == tune["after"]["threshold"]
    assert tune["steps"] == 3 and tune["batch"] == {"negatives": 2, "replay": 2}
    assert tune["crop"] == CROP and tune["lr_scale"] == ft.LR_SCALE
    # a tenth of the recorded training rates (Stage 2: main and native groups)
    cfg = TrainConfig()
    assert tune["lr"]["main"] == pytest.approx(cfg.lr_main * ft.LR_SCALE)
    assert tune["lr"]["native"] == pytest.approx(cfg.lr_native * ft.LR_SCALE)
    assert tune["random_crops"] == 6 * ft.RANDOM_PER_FRAME  # 8 frames, 2 held out
    assert tune["replay"]["train_images"] == 3 and tune["replay"]["val_images"] == 1
    assert ckpt["metrics"]["val_at_threshold"]["threshold"] == ckpt["threshold"]
    src = read_checkpoint(source)
    changed = [k for k, v in src["state_dict"].items() if not torch.equal(ckpt["state_dict"][k], v)]
    assert changed  # the weights were tuned
    # predict with the tuned checkpoint: its threshold, and the held-out count as recorded
    held = [frames / name for name in record["holdout"]["frame_names"]]
    pred = ["predict", "--checkpoint", str(out), "--output", str(tmp_path / "p"), "--input"]
    assert main([*pred, *map(str, held)]) == 0
    err = capsys.readouterr().err
    assert f"threshold {ckpt['threshold']} from calibration on 6 target-free frames" in err
    assert "after a 3-step fine-tune on them" in err
    per_frame = len(pd.read_csv(tmp_path / "p" / "detections.csv")) / len(held)
    assert per_frame == pytest.approx(tune["after"]["heldout_false_per_frame"])


# -- (b) the held-out frames are disjoint from the fine-tune frames, and recorded ------------
def test_held_out_frames_never_tuned_on(setup, tmp_path, monkeypatch):
    source, frames, replay = setup
    seen: list[str] = []
    cut = ft.negative_crops

    def spy(view, prob, threshold, side, name, rng, *a, **k):
        seen.append(name)
        return cut(view, prob, threshold, side, name, rng, *a, **k)

    monkeypatch.setattr(ft, "negative_crops", spy)
    result = ft.calibrate_finetune(
        source, [frames], tmp_path / "t.pt", 3.0, device="cpu", steps=1, replay=str(replay)
    )
    record = result.calibration
    tuned, held = record["finetune"]["frames"], record["finetune"]["heldout_frames"]
    assert (len(tuned), len(held)) == (6, 2)  # the default quarter of 8
    assert not set(tuned) & set(held) and sorted(tuned + held) == [f"f{i}.png" for i in range(8)]
    assert sorted(seen) == sorted(tuned)  # crops are cut from the fine-tune frames only
    assert record["frame_names"] == tuned and record["holdout"]["frame_names"] == held
    saved = read_checkpoint(tmp_path / "t.pt")["calibration"]
    assert saved["finetune"]["heldout_frames"] == held


@pytest.mark.parametrize(
    "extra, expect",
    [
        (["--holdout", "0"], "--finetune needs held-out frames"),
        (["--replay", "NOWHERE"], "--replay: dataset"),
        (["--background", "ONE"], "f0.png: --finetune needs at least 2 target-free frames"),
    ],
)
def test_bad_finetune_input_one_error_line(setup, tmp_path, capsys, extra, expect):
    source, frames, replay = setup
    places = {"NOWHERE": str(tmp_path / "missing"), "ONE": str(frames / "f0.png")}
    extra = [places.get(x, x) for x in extra]
    assert main([*finetune_args(source, frames, replay, tmp_path / "t.pt"), *extra]) == 2
    assert expect in one_error_line(capsys)
    assert not (tmp_path / "t.pt").exists()


def test_finetune_options_need_finetune(setup, tmp_path, capsys):
    source, frames, _ = setup
    args = ["calibrate", "--checkpoint", str(source), "--background", str(frames)]
    assert main([*args, "--out", str(tmp_path / "c.pt"), "--finetune-steps", "5"]) == 2
    assert "--finetune-steps applies to the fine-tune only" in one_error_line(capsys)


# -- (c) never over an input ------------------------------------------------------------------
@pytest.mark.parametrize("victim", ["checkpoint", "frame", "replay"])
def test_finetune_never_writes_over_an_input(setup, capsys, victim):
    source, frames, replay = setup
    out = {
        "checkpoint": source,
        "frame": frames / "f3.png",
        "replay": replay / "masks" / "img0.png",
    }[victim]
    before = out.read_bytes()
    assert main(finetune_args(source, frames, replay, out)) == 2
    assert f"{out}: refusing to write over the input" in one_error_line(capsys)
    assert out.read_bytes() == before


# -- (d) the hard-negative crops sit on the false targets the model raised -------------------
def test_negative_crops_centred_on_false_targets_by_hand():
    """Probability map by hand: a 2x2 blob at rows 40-41, cols 50-51 (peak 0.7), a 3x3 one in
    the top-right corner (peak 0.9) and one under the threshold (0.4)."""
    prob = np.zeros((96, 96), np.float32)
    prob[40:42, 50:52] = 0.7
    prob[1:4, 92:95] = 0.9
    prob[70:72, 10:12] = 0.4
    view = prob * 10  # the network input: any image aligned with the map
    crops = ft.negative_crops(view, prob, 0.5, CROP, "x.png", np.random.default_rng(0))
    hard = [c for c in crops if c.target is not None]
    assert len(crops) == 2 + ft.RANDOM_PER_FRAME and len(hard) == 2
    corner, middle = hard  # the most confident first
    assert (corner.target["y"], corner.target["x"]) == (2.0, 93.0)
    assert (middle.target["y"], middle.target["x"]) == (40.5, 50.5)
    # the centroid (40.5, 50.5) rounds to the pixel (40, 50): the crop's centre pixel
    assert middle.window == (40 - CROP // 2, 50 - CROP // 2, 40 + CROP // 2, 50 + CROP // 2)
    assert middle.image[CROP // 2, CROP // 2] == 7.0
    assert np.argwhere(middle.image == 7.0).tolist() == [[16, 16], [16, 17], [17, 16], [17, 17]]
    # at the corner the window is shifted inside the frame, keeping the target in it
    assert corner.window == (0, 96 - CROP, CROP, 96)
    assert corner.image[2, 93 - (96 - CROP)] == 9.0
    assert all(c.image.shape == (CROP, CROP) for c in crops)


def test_negative_crops_under_resize256_and_small_frames():
    """resize256: the view is 64x64 for a 32x48 frame, so the centroid is mapped; a frame
    smaller than the crop is padded to it, with the target still at its place."""
    prob = np.zeros((32, 48), np.float32)
    prob[8, 24] = 0.8
    view = np.zeros((64, 64), np.float32)
    (crop,) = ft.negative_crops(view, prob, 0.5, 16, "x", np.random.default_rng(0), 8, 0)
    # pixel centres: (8 + 0.5) * 2 - 0.5 = 16.5 -> 16; (24 + 0.5) * 4 / 3 - 0.5 = 32.2 -> 32
    assert crop.window == (8, 24, 24, 40)
    small = np.arange(20 * 24, dtype=np.float32).reshape(20, 24)
    prob = np.zeros((20, 24), np.float32)
    prob[5, 6] = 0.9
    (crop,) = ft.negative_crops(small, prob, 0.5, 32, "x", np.random.default_rng(0), 8, 0)
    assert crop.window == (0, 0, 20, 24) and crop.image.shape == (32, 32)
    assert crop.image[5, 6] == small[5, 6] and crop.image[25, 30] == np.median(small)


def test_pipeline_crops_on_the_model_s_false_targets(setup, tmp_path, monkeypatch):
    """Through calibrate_finetune with the image as the 'model's' probability map: the crops
    handed to the fine-tune are exactly one on each fine-tune frame's 3x3 spot (0.9) and one on
    its bright row (0.6), above the checkpoint's threshold (0.5); the dim spot (0.45) gets none."""
    source, _, replay = setup
    frames = tmp_path / "flat"
    frames.mkdir()
    spots = {}
    for i in range(8):
        image = np.full((64, 80), 0.3)
        y, x = 8 + 2 * i, 10 + 7 * i
        image[y : y + 3, x : x + 3] = 0.9
        image[50, :] = 0.6
        image[30:32, 60:62] = 0.45
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(frames / f"f{i}.png")
        spots[f"f{i}.png"] = (y + 1, x + 1)  # the spot's centroid
    monkeypatch.setattr(ft, "predict_probability", lambda model, image, *a, **k: image)
    handed = {}

    def no_training(model, cfg, negatives, *a, **k):
        handed["negatives"] = list(negatives)
        return {"steps": 0}

    monkeypatch.setattr(ft, "fine_tune", no_training)
    result = ft.calibrate_finetune(
        source, [frames], tmp_path / "t.pt", 3.0, device="cpu", steps=1, replay=str(replay)
    )
    tuned = result.calibration["finetune"]["frames"]
    hard = [c for c in handed["negatives"] if c.target is not None]
    assert result.calibration["finetune"]["hard_negatives"] == len(hard) == 2 * len(tuned)
    centres = sorted((c.frame, c.target["y"], c.target["x"]) for c in hard)
    expected = [(f, *spots[f]) for f in tuned] + [(f, 50.0, 39.5) for f in tuned]
    assert centres == sorted(expected)
    for crop in hard:
        top, left, bottom, right = crop.window
        cy, cx = round(crop.target["y"]), round(crop.target["x"])
        assert top <= cy < bottom and left <= cx < right
        # centred, unless shifted inside the 64x80 frame at a border
        if CROP // 2 <= cy <= 64 - CROP // 2:
            assert cy - top == CROP // 2
        if CROP // 2 <= cx <= 80 - CROP // 2:
            assert cx - left == CROP // 2
        assert crop.image[cy - top, cx - left] == crop.image.max()  # the bright pixel itself


# -- (e) the replay crops hold targets; each batch is half negatives, half replay ------------
def test_replay_batches_hold_targets(tmp_path):
    index = open_dataset(write_toolbox_dataset(tmp_path, "replayset", n=6, size=(48, 48)))
    cfg = TrainConfig(scale_min=0.5, scale_max=3.0, crop_size=CROP)
    prep = {"normalize": "standardize", "resize": "bilinear", "input_size": None}
    replay = ft.ReplayBatches(index, "native", 256, CROP, cfg, prep, seed=0)
    for step in range(4):
        for sample in replay.samples(step, range(len(replay))):
            assert sample["mask"].shape == (1, CROP, CROP) and sample["mask"].sum() > 0


def test_each_step_is_half_negatives_half_replayed_targets(tmp_path, monkeypatch):
    from nairstd.zoo import build_model

    index = open_dataset(write_toolbox_dataset(tmp_path, "replayset", n=6, size=(48, 48)))
    cfg = TrainConfig(stage="2", crop_size=CROP, fa_weight=0.25, top_k=3)
    prep = {"normalize": "standardize", "resize": "bilinear", "input_size": None}
    replay = ft.ReplayBatches(index, "native", 256, CROP, cfg, prep, seed=0)
    view = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    prob = np.zeros((64, 64), np.float32)
    prob[30, 30] = 0.9
    negatives = ft.negative_crops(view, prob, 0.5, CROP, "x", np.random.default_rng(0))
    masks = []
    policy = ft.policy_for(cfg)
    losses = policy.losses

    def spy(fwd, model, x, y):
        masks.append(y.clone())
        return losses(fwd, model, x, y)

    monkeypatch.setattr(policy, "losses", spy)
    monkeypatch.setattr(ft, "policy_for", lambda cfg: policy)
    torch.manual_seed(0)
    model = build_model("na_irstd", "tiny", top_k=3)
    record = ft.fine_tune(model, cfg, negatives, replay, 2, 2, 0, torch.device("cpu"))
    assert len(masks) == 2 and record["steps"] == 2 and record["optimizer"] == "Adam"
    for y in masks:
        assert y.shape == (4, 1, CROP, CROP)
        assert y[:2].sum() == 0 and all(m.sum() > 0 for m in y[2:])


class _Payload:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_untrusted_checkpoint_never_runs(setup, tmp_path, capsys):
    """The checkpoint is loaded with weights_only: a pickled payload is refused, never run."""
    _, frames, replay = setup
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({**read_checkpoint(setup[0]), "payload": _Payload(marker)}, evil)
    assert main(finetune_args(evil, frames, replay, tmp_path / "t.pt")) == 2
    line = one_error_line(capsys)
    assert "evil.pt" in line and "refused" in line
    assert not marker.exists() and not (tmp_path / "t.pt").exists()


def test_warns_when_the_fine_tune_costs_val_pd(setup, tmp_path, monkeypatch):
    """The 'model' is the image, but after the fake fine-tune blind on the replay dataset's
    48x48 frames: the val Pd falls from 100 % to 0 %, so both warnings fire; the checkpoint is
    written all the same. On the 64x80 frames 0.91 is the first threshold above the spots."""
    source, frames, replay = setup
    state = {"tuned": False}

    def model(net, image, *a, **k):
        return image * 0 if state["tuned"] and image.shape == (48, 48) else image

    def blinding(*a, **k):
        state["tuned"] = True
        return {"steps": 0}

    monkeypatch.setattr(ft, "predict_probability", model)
    monkeypatch.setattr(ft, "fine_tune", blinding)
    result = ft.calibrate_finetune(
        source, [frames], tmp_path / "t.pt", 0.2, device="cpu", steps=1, replay=str(replay)
    )
    assert result.threshold == 0.91
    drop, low = result.warnings
    assert "cost replayset val Pd at threshold 0.91: 100.0 % before, 0.0 % after" in drop
    assert "val Pd at threshold 0.91 is 0.0 % (< 80 %)" in low
    tune = read_checkpoint(tmp_path / "t.pt")["calibration"]["finetune"]
    assert tune["before"]["val"]["Pd"] == 100.0 and tune["after"]["val"]["Pd"] == 0.0
    assert tune["before"]["threshold_alone"] == 0.91  # the frames' maps did not change
