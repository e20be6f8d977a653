"""The isolation test (issue 23): a detection that is the bright end of a larger structure (a lamp
head on its pole, a roof corner) is rejected, an isolated small target kept; predict, calibrate
and the OOD check apply the same test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import one_error_line, write_tiny_checkpoint
from PIL import Image
from scipy import ndimage

from nairstd import calibrate as cal
from nairstd.cli import main
from nairstd.isolation import IsolationTest, structure_test, suppress_structure_ends
from nairstd.predict import detections
from nairstd.train.checkpoint import read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

SKY = 0.1


def scene() -> np.ndarray:
    """96x128 dark sky with, by hand: an isolated 3x3 target (0.9) at (20, 20); a lamp head
    (0.9) atop a 1 px pole at 0.6 (above the half-way level 0.5) at (20, 60); a building block
    at 0.7 whose corner holds a hot 2x2 unit (0.9) at (60, 90); a 3x3 target at the frame's left
    edge (the frame edge is not the window's edge)."""
    image = np.full((96, 128), SKY, np.float32)
    image[19:22, 19:22] = 0.9  # target
    image[22:90, 60] = 0.6  # pole
    image[19:22, 59:62] = 0.9  # lamp head
    image[60:96, 90:128] = 0.7  # building
    image[60:62, 90:92] = 0.9  # hot roof-corner unit
    image[40:43, 0:3] = 0.9  # target at the frame edge
    return image


def peaks_only(image: np.ndarray) -> np.ndarray:
    """A 'model' that fires on the 0.9 blobs only (probability 0.9 there, 0 elsewhere)."""
    return np.where(image > 0.85, 0.9, 0.0).astype(np.float32)


def test_isolated_targets_kept_structure_ends_rejected():
    image = scene()
    prob, rejected = suppress_structure_ends(image, peaks_only(image), 0.5, IsolationTest())
    assert rejected == 2
    assert sorted((round(d["y"]), round(d["x"])) for d in detections(prob, "x", 0.5)) == [
        (20, 20),
        (41, 1),
    ]
    # the rejected detections' pixels are 0, the others unchanged
    assert prob[20, 60] == 0 and prob[60, 90] == 0 and prob[20, 20] == pytest.approx(0.9)


def test_a_dim_pole_below_the_level_leaves_the_lamp_head():
    """alpha sets how bright the structure must be: a pole at 0.3 (below 0.1 + 0.5 x 0.8 = 0.5)
    does not carry the lamp head away at alpha 0.5; at alpha 0.2 (level 0.26) it does."""
    image = scene()
    image[22:90, 60] = 0.3
    prob = peaks_only(image)
    _, at_half = suppress_structure_ends(image, prob, 0.5, IsolationTest(alpha=0.5))
    _, at_fifth = suppress_structure_ends(image, prob, 0.5, IsolationTest(alpha=0.2))
    assert (at_half, at_fifth) == (1, 2)  # the roof corner, then the lamp head too


def test_the_test_reads_intensities_relative_to_background_and_peak():
    """Any gain and offset (8-bit, 16-bit raw counts) gives the same decisions."""
    image = scene()
    raw = 3000.0 + 40000.0 * image  # 16-bit counts
    prob = peaks_only(image)
    a, n_a = suppress_structure_ends(image, prob, 0.5, IsolationTest())
    b, n_b = suppress_structure_ends(raw, prob, 0.5, IsolationTest())
    assert n_a == n_b == 2 and np.array_equal(a, b)


def test_parameters_checked_and_read_from_untrusted_records():
    assert IsolationTest.from_dict({"alpha": 0.3}) == IsolationTest(alpha=0.3)
    for bad in ({"alpha": 1.5}, {"window": 1}, {"alpha": "x"}, {"other": 1}, [0.5]):
        with pytest.raises(ValueError, match="alpha|window|reject_structures"):
            IsolationTest.from_dict(bad)
    recorded = {"reject_structures": {"alpha": 0.4, "window": 16, "area_max": 100}}
    assert structure_test("auto", {}) is None and structure_test("off", recorded) is None
    assert structure_test("on", {}) == IsolationTest()
    assert structure_test("auto", recorded) == IsolationTest(0.4, 16, 100)
    with pytest.raises(ValueError, match="--reject-structures"):
        structure_test("maybe", {})
    with pytest.raises(ValueError, match="differ in size"):
        suppress_structure_ends(
            np.zeros((4, 4)), np.zeros((4, 5), np.float32), 0.5, IsolationTest()
        )


@pytest.mark.parametrize("seed", [0, 1])
def test_calibrate_counts_what_predict_keeps(seed):
    """component_counts with the test equals, at every threshold, the detections left after
    suppress_structure_ends: calibrate sets the threshold on what predict will report."""
    rng = np.random.default_rng(seed)
    image = scene() + 0.02 * rng.standard_normal((96, 128)).astype(np.float32)
    prob = ndimage.gaussian_filter(peaks_only(scene()) + 0.3 * rng.random((96, 128)), 1.0)
    prob = (prob / prob.max()).astype(np.float32)
    test = IsolationTest()
    thresholds = cal.CALIBRATION_THRESHOLDS
    counts = cal.component_counts(prob, thresholds, image, test)
    expected = [
        len(detections(suppress_structure_ends(image, prob, t, test)[0], "x", t))
        for t in thresholds
    ]
    assert counts == expected
    assert counts != cal.component_counts(prob, thresholds)  # the test did reject some


@pytest.fixture
def identity_model(monkeypatch):
    """predict's and calibrate's 'model' fires on the 0.9 blobs of the frame (peaks_only)."""
    import nairstd.predict as predict_module

    fake = lambda model, image, *a, **k: peaks_only(image)  # noqa: E731
    monkeypatch.setattr(predict_module, "predict_probability", fake)
    monkeypatch.setattr(cal, "predict_probability", fake)


def _write_scene(folder):
    folder.mkdir()
    Image.fromarray(np.round(scene() * 255).astype(np.uint8)).save(folder / "street.png")
    return folder


def test_predict_and_calibrate_reject_structures_end_to_end(tmp_path, identity_model, capsys):
    frames = _write_scene(tmp_path / "frames")
    source = write_tiny_checkpoint(tmp_path / "src.pt", top_k=3)
    base = ["predict", "--checkpoint", str(source), "--input", str(frames), "--threshold", "0.5"]
    assert main([*base, "--output", str(tmp_path / "off")]) == 0
    assert len(pd.read_csv(tmp_path / "off" / "detections.csv")) == 4  # default: no test
    assert main([*base, "--output", str(tmp_path / "on"), "--reject-structures", "on"]) == 0
    assert "rejecting structure ends: isolation test alpha 0.5" in capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "on" / "detections.csv")) == 2
    written = np.asarray(Image.open(tmp_path / "on" / "street.png"))
    assert written[20, 60] == 0 and written[20, 20] > 0  # the rejected pixels are 0 in the map
    # calibrate with the test: the 2 isolated blobs are all it counts; the copy records the test
    args = ["calibrate", "--checkpoint", str(source), "--background", str(frames)]
    budget = ["--max-false-per-frame", "2", "--reject-structures", "on"]
    assert main([*args, *budget, "--out", str(tmp_path / "cal.pt")]) == 0
    out = capsys.readouterr().out
    assert "structure ends rejected (isolation test alpha 0.5" in out
    ckpt = read_checkpoint(tmp_path / "cal.pt")
    assert ckpt["reject_structures"] == IsolationTest().to_dict()
    assert ckpt["calibration"]["false_per_frame"] == 2.0 and ckpt["threshold"] == 0.05
    # predict with the calibrated copy applies it unasked, and says so
    calibrated = ["predict", "--checkpoint", str(tmp_path / "cal.pt"), "--input", str(frames)]
    assert main([*calibrated, "--output", str(tmp_path / "auto")]) == 0
    assert "(recorded in the checkpoint)" in capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "auto" / "detections.csv")) == 2
    # without the test the same frames raise 4 false targets: no threshold up to 0.9 meets 2
    assert main([*args, "--max-false-per-frame", "2", "--out", str(tmp_path / "c2.pt")]) == 0
    assert read_checkpoint(tmp_path / "c2.pt")["threshold"] > 0.89


def test_reject_structures_not_with_the_finetune(tmp_path, capsys):
    frames = _write_scene(tmp_path / "frames")
    args = ["calibrate", "--background", str(frames), "--out", str(tmp_path / "c.pt")]
    assert main([*args, "--finetune", "--reject-structures", "on"]) == 2
    assert "--reject-structures applies to calibrate without --finetune" in one_error_line(capsys)


def test_an_exported_calibrated_copy_carries_its_isolation_test(tmp_path):
    """export writes the copy's `reject_structures` into the ONNX metadata; the onnxruntime
    backend reads it back, so predict on the .onnx file applies the same test."""
    from nairstd.export import export_metadata
    from nairstd.onnx_backend import checkpoint_info
    from nairstd.train.checkpoint import load_model

    source = write_tiny_checkpoint(tmp_path / "src.pt", top_k=3)
    model, ckpt = load_model(source, "cpu")
    assert "reject_structures" not in checkpoint_info(export_metadata(model, ckpt, None), "x")
    ckpt["reject_structures"] = IsolationTest(alpha=0.4).to_dict()
    info = checkpoint_info(export_metadata(model, ckpt, None), "x.onnx")
    assert structure_test("auto", info) == IsolationTest(alpha=0.4)


class _BrightestBlobs(torch.nn.Module):
    """Logits > 0 on the pixels within 5 % of the input's range of its maximum (the 0.9 blobs of
    `scene`, whatever the normalisation), < 0 elsewhere."""

    def forward(self, x):
        top, low = x.amax(dim=(2, 3), keepdim=True), x.amin(dim=(2, 3), keepdim=True)
        return 50.0 * (x - (top - 0.05 * (top - low)))


def test_eval_scores_what_predict_reports(tmp_path):
    """evaluate_model with the test drops the structure ends before scoring: the two false
    targets (lamp head, roof corner) go, the two real targets stay found."""
    from nairstd.protocols import NATIVE
    from nairstd.train.evaluate import evaluate_model

    folder = tmp_path / "STREET"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    (folder / "img_idx").mkdir()
    image = scene()
    mask = np.zeros(image.shape, np.uint8)
    mask[19:22, 19:22] = mask[40:43, 0:3] = 255
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(folder / "images" / "s0.png")
    Image.fromarray(mask).save(folder / "masks" / "s0.png")
    (folder / "img_idx" / "test_STREET.txt").write_text("s0\n")
    runs = {
        name: evaluate_model(
            _BrightestBlobs(), folder, "test", NATIVE, device="cpu", structures=test
        )
        for name, test in (("off", None), ("on", IsolationTest()))
    }
    assert runs["off"]["per_image"]["n_false"] == [2] and runs["off"]["Pd"] == 100.0
    assert runs["on"]["per_image"]["n_false"] == [0] and runs["on"]["Pd"] == 100.0
    assert runs["on"]["reject_structures"] == IsolationTest().to_dict()
    assert runs["off"]["reject_structures"] is None


def test_notebook_05_runs_a_recording_checkpoint_as_predict_does():
    """operating_points' pass over the OOD sets applies the isolation test a checkpoint records
    (the shipped na_irstd), to its OOD rows and its test curve, also when the frames arrive as a
    generator (the worker processes read them from disk)."""
    from nairstd.reproduce.operating_points import _method_pass

    mask = np.zeros((96, 128), bool)
    mask[19:22, 19:22] = mask[40:43, 0:3] = True

    def sets():
        return [("test", "native", (f for f in [(scene(), mask)]))]

    plain = {"protocol": "native", "threshold": 0.5}
    recording = {**plain, "reject_structures": IsolationTest().to_dict()}
    rows = {}
    for name, ckpt in (("plain", plain), ("recording", recording)):
        _, curve, _, ood, _ = _method_pass(name, _BrightestBlobs(), ckpt, sets(), False)
        at_half = next(r for r in curve if r["threshold"] == 0.5)
        rows[name] = (ood[0]["false_targets_per_frame"], ood[0]["Pd"], at_half["fa_per_frame"])
    assert rows == {"plain": (2.0, 100.0, 2.0), "recording": (0.0, 100.0, 0.0)}
