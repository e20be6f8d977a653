"""Operating points (issue 12): the protocol and threshold a checkpoint records, `predict
--threshold/--protocol`, `score --sweep/--threshold`, the sweep rows and the OOD check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_toolbox_dataset
from PIL import Image
from torch import nn

from nairstd.cli import main
from nairstd.data import open_dataset
from nairstd.io import save_torch
from nairstd.ood import ood_check, synthetic_frames
from nairstd.operating import operating_point
from nairstd.predict import predict_files
from nairstd.sweep import sweep
from nairstd.train.checkpoint import model_checkpoint


class Ramp(nn.Module):
    """A fixed 'model': logit = standardised input (so brighter pixels = higher probability)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x * self.scale


def test_operating_point_precedence():
    assert operating_point(None) == ("native", 0.5)
    ckpt = {"config": {"protocol": "resize256"}}
    assert operating_point(ckpt) == ("resize256", 0.5)
    ckpt = {"protocol": "native", "threshold": 0.7, "config": {"protocol": "resize256"}}
    assert operating_point(ckpt) == ("native", 0.7)
    assert operating_point(ckpt, "resize256", 0.3) == ("resize256", 0.3)
    with pytest.raises(ValueError, match="threshold"):
        operating_point(ckpt, None, 1.0)


def _scene(tmp_path):
    image = np.full((40, 52), 30, np.uint8)
    image[10:13, 20:24] = 250  # a bright target
    image[30:32, 5:7] = 120  # a dimmer blob: above a low threshold only
    Image.fromarray(image).save(tmp_path / "scene.png")
    return tmp_path / "scene.png"


def test_predict_threshold_changes_the_detections(tmp_path):
    scene = _scene(tmp_path)
    low = predict_files(Ramp(), [scene], tmp_path / "low", device="cpu", threshold=0.6)
    high = predict_files(Ramp(), [scene], tmp_path / "high", device="cpu", threshold=0.998)
    assert len(low.detections) == 2 and len(high.detections) == 1
    # the probability PNG does not depend on the threshold
    a = np.asarray(Image.open(tmp_path / "low" / "scene.png"))
    assert np.array_equal(a, np.asarray(Image.open(tmp_path / "high" / "scene.png")))


def test_predict_defaults_to_the_checkpoint_protocol_and_threshold(tmp_path, monkeypatch):
    """A checkpoint trained under resize256 predicts under resize256 unless told otherwise."""
    from nairstd.zoo import build_model

    torch.manual_seed(0)
    model = build_model("detector", "tiny")
    ckpt = model_checkpoint(
        model, "detector", "tiny", {}, config={"protocol": "resize256"}, threshold=0.8
    )
    save_torch(ckpt, tmp_path / "c.pt")
    seen = {}
    import nairstd.predict as predict

    real = predict.predict_probability

    def spy(model, image, protocol, *args, **kwargs):
        seen["protocol"] = protocol
        return real(model, image, protocol, *args, **kwargs)

    monkeypatch.setattr(predict, "predict_probability", spy)
    scene = _scene(tmp_path)
    assert main(["predict", "--checkpoint", str(tmp_path / "c.pt"), "--input", str(scene),
                 "--output", str(tmp_path / "o")]) == 0  # fmt: skip
    assert seen["protocol"] == "resize256"
    assert main(["predict", "--checkpoint", str(tmp_path / "c.pt"), "--input", str(scene),
                 "--output", str(tmp_path / "o2"), "--protocol", "native"]) == 0  # fmt: skip
    assert seen["protocol"] == "native"
    assert main(["predict", "--checkpoint", str(tmp_path / "c.pt"), "--input", str(scene),
                 "--output", str(tmp_path / "o3"), "--threshold", "1.5"]) == 2  # fmt: skip


def test_sweep_is_monotone_and_counts_false_targets():
    gt = np.zeros((20, 20), bool)
    gt[5, 5] = True
    prob = np.zeros((20, 20), np.float32)
    prob[5, 5] = 0.9  # the target
    prob[15, 15] = 0.4  # a false target above 0.35 only
    prob[2, 17] = 0.2  # another above 0.15 only
    rows = sweep([(prob, gt), (np.zeros_like(prob), np.zeros_like(gt))], [0.1, 0.3, 0.5, 0.95])
    assert [r["fa_per_frame"] for r in rows] == [1.0, 0.5, 0.0, 0.0]  # 2 frames
    assert [r["Pd"] for r in rows] == [100.0, 100.0, 100.0, 0.0]


def test_score_sweep_writes_csv_and_figure(tmp_path, capsys):
    folder = write_toolbox_dataset(tmp_path, "TOY", n=4)
    pred = tmp_path / "pred"
    pred.mkdir()
    index = open_dataset(folder)
    for stem in index.split("test"):
        mask = np.asarray(Image.open(folder / "masks" / f"{stem}.png")) > 0
        prob = np.where(mask, 200, 0).astype(np.uint8)
        prob[0, 0] = 100  # a false target between thresholds 0.35 and 0.4
        Image.fromarray(prob).save(pred / f"{stem}.png")
    csv = tmp_path / "sweep.csv"
    assert main(["score", "--pred", str(pred), "--data", str(folder), "--sweep", str(csv)]) == 0
    table = pd.read_csv(csv)
    assert len(table) == 19 and table["threshold"].iloc[0] == pytest.approx(0.05)
    low, high = table.iloc[0], table.iloc[-1]
    assert low["fa_per_frame"] == 1.0 and low["Pd"] == 100.0
    assert high["fa_per_frame"] == 0.0 and high["Pd"] == 0.0  # 200/255 < 0.95
    assert csv.with_suffix(".png").is_file()
    capsys.readouterr()
    assert main(["score", "--pred", str(pred), "--data", str(folder), "--threshold", "0.45",
                 "--json"]) == 0  # fmt: skip
    assert '"FA_per_image": 0.0' in capsys.readouterr().out


def test_synthetic_ood_frames_have_the_asked_size():
    (image, mask), = synthetic_frames((48, 64), 1)  # fmt: skip
    assert image.shape == mask.shape == (48, 64) and image.dtype == np.float32


def test_ood_check_rows(tmp_path, monkeypatch):
    from nairstd import ood

    monkeypatch.setattr(ood, "SIZES", {"64x48": (48, 64)})
    monkeypatch.setattr(
        ood, "frame_counts", lambda profile: {"native": 2, "64x48": 1, "synthetic-64x48": 1}
    )
    index = open_dataset(write_toolbox_dataset(tmp_path, "TOY", n=4))
    rows = ood_check(Ramp(), index, "smoke", threshold=0.9)
    assert [r["set"] for r in rows] == ["test", "empty-native", "empty-64x48", "synthetic-64x48"]
    assert rows[0]["Pd"] == 100.0  # the 250-grey targets on a flat 40 background
    assert rows[1]["fa_per_frame"] == 0.0  # the same frames, targets inpainted: nothing left
    assert np.isnan(rows[2]["Pd"])  # no targets in the empty sets


def _row(threshold, pd, *empty):
    keys = ["fa_per_frame_empty", "fa_per_frame_empty_640x512", "fa_per_frame_empty_1920x1080"]
    return {"threshold": threshold, "Pd": pd, **dict(zip(keys, empty))}


def test_shipped_threshold_rule_counts_the_worst_target_free_set():
    from nairstd.shipped import choose_threshold

    rows = [
        _row(0.1, 95.0, 0.1, 0.4, 2.0),  # native fine, 1920x1080 far above the bar
        _row(0.3, 93.0, 0.1, 0.3, 0.45),  # within the bar (0.5), not the goal (0.2)
        _row(0.5, 91.0, 0.1, 0.1, 0.3),
        _row(0.7, 89.0, 0.0, 0.1, 0.1),  # within the goal, but Pd under the 90 % floor
    ]
    point = choose_threshold(rows)
    assert point["threshold"] == 0.3 and point["worst_empty"] == 0.45
    assert "<= 0.5 false targets" in point["rule"]
    # One threshold reaches the goal with Pd >= 90: it wins over a higher Pd within the bar.
    rows.append(_row(0.6, 90.0, 0.1, 0.2, 0.2))
    assert choose_threshold(rows)["threshold"] == 0.6
    # Pd >= 90 only with too many false targets (> FA_CAP): the highest Pd under the cap.
    low = [_row(0.05, 92.0, 1.0, 4.0, 17.0), _row(0.5, 82.0, 0.3, 0.9, 1.9)]
    low += [_row(0.8, 82.0, 0.1, 0.5, 1.1), _row(0.9, 70.0, 0.1, 0.3, 0.6)]
    assert choose_threshold(low)["threshold"] == 0.8  # ties on Pd: the higher threshold
    # Pd >= 90 under the cap, above the bar: the fewest false targets.
    assert choose_threshold(low + [_row(0.3, 90.0, 0.3, 1.0, 1.5)])["threshold"] == 0.3
    # Nothing under the cap: the fewest false targets.
    assert (
        choose_threshold([_row(0.1, 95.0, 3, 4, 5), _row(0.9, 80.0, 2, 3, 4)])["threshold"] == 0.9
    )
    # Rows recorded before the rescaled sets existed (native only) still work.
    assert choose_threshold([{"threshold": 0.5, "Pd": 92.0, "fa_per_frame_empty": 0.1}])["Pd"] == 92


def test_eval_defaults_to_the_checkpoint_protocol_and_says_so(tmp_path, capsys):
    """Issue 23: `eval` runs a checkpoint under the protocol it records, as `predict` does (it
    used to score every checkpoint under resize256), and names the protocol it used."""
    import json

    from nairstd.zoo import build_model

    data = write_toolbox_dataset(tmp_path, "TOY", n=4)
    torch.manual_seed(0)
    model = build_model("detector", "tiny")
    save_torch(model_checkpoint(model, "detector", "tiny", {}, config={"protocol": "native"}),
               tmp_path / "native.pt")  # fmt: skip
    save_torch(model_checkpoint(model, "detector", "tiny", {}), tmp_path / "plain.pt")
    cases = [
        ("native.pt", [], "native", "checkpoint"),
        ("native.pt", ["--protocol", "resize256"], "resize256", "option"),
        ("plain.pt", [], "resize256", "default"),  # records nothing: the paper's protocol
    ]
    for name, extra, protocol, source in cases:
        args = ["eval", "--checkpoint", str(tmp_path / name), "--dataset", str(data), *extra]
        assert main([*args, "--json", "--device", "cpu"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert (result["protocol"], result["protocol_source"]) == (protocol, source), name
    assert main(["eval", "--checkpoint", str(tmp_path / "native.pt"), "--dataset", str(data)]) == 0
    assert "protocol native, recorded in the checkpoint;" in capsys.readouterr().out


def test_eval_scores_at_the_checkpoint_threshold_and_says_so(tmp_path, capsys):
    """`eval` scores a checkpoint at the threshold it records (one `calibrate` set, the model
    card's), as `predict` detects with it; it used to score every checkpoint at 0.5.
    `--threshold` overrides it, and a value outside (0, 1) is one error line."""
    import json

    from nairstd.zoo import build_model

    data = write_toolbox_dataset(tmp_path, "TOY", n=4)
    model = build_model("detector", "tiny")
    with torch.no_grad():  # logits 0, probability 0.5 everywhere: > 0.1 passes, > 0.5 does not
        for param in model.parameters():
            param.zero_()
    save_torch(model_checkpoint(model, "detector", "tiny", {}, threshold=0.1), tmp_path / "t.pt")
    save_torch(model_checkpoint(model, "detector", "tiny", {}), tmp_path / "plain.pt")

    def run(name: str, *extra: str) -> dict:
        args = ["eval", "--checkpoint", str(tmp_path / name), "--dataset", str(data), *extra]
        assert main([*args, "--json", "--device", "cpu"]) == 0
        return json.loads(capsys.readouterr().out)

    own, high, plain = run("t.pt"), run("t.pt", "--threshold", "0.9"), run("plain.pt")
    assert (own["threshold"], own["threshold_source"]) == (0.1, "checkpoint")
    assert (high["threshold"], high["threshold_source"]) == (0.9, "option")
    assert (plain["threshold"], plain["threshold_source"]) == (0.5, "default")
    # The metrics are taken at that threshold: every pixel is target at 0.1, none at 0.5 or 0.9.
    assert own["fa_pixels"] > 0 and own["intersection"] > 0
    assert high["fa_pixels"] == plain["fa_pixels"] == 0 == plain["intersection"]
    assert main(["eval", "--checkpoint", str(tmp_path / "t.pt"), "--dataset", str(data)]) == 0
    assert "threshold 0.1, recorded in the checkpoint)" in capsys.readouterr().out
    args = ["eval", "--checkpoint", str(tmp_path / "t.pt"), "--dataset", str(data)]
    assert main([*args, "--threshold", "1.5"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--threshold" in err and len(err.strip().splitlines()) == 1
