"""The shipped models (nairstd/pretrained): they load, `predict` uses the na_irstd one without
--checkpoint, and they reproduce the validation metrics recorded when they were exported."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from nairstd.cli import main
from nairstd.operating import PRETRAINED, shipped_path
from nairstd.shipped import RECIPES, validation_sweep
from nairstd.train.checkpoint import load_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", list(RECIPES))
def test_shipped_weights_load_and_record_their_operating_point(name):
    path = shipped_path(name)
    assert path.is_file(), f"{path} missing: regenerate with python -m nairstd.shipped"
    assert path.stat().st_size < 8 * 2**20  # a few MB at most
    model, ckpt = load_model(path)
    assert ckpt["model"] == name and ckpt["protocol"] == "native"
    assert 0.0 < ckpt["threshold"] < 1.0
    assert ckpt["config"]["dataset"] == "SIRST"
    info = json.loads((PRETRAINED / f"{name}.json").read_text())
    assert info["threshold"] == ckpt["threshold"]
    # na_irstd drops structure ends (nairstd.isolation): recorded where predict reads it.
    from nairstd.shipped import SHIPPED_ISOLATION

    want = SHIPPED_ISOLATION[name].to_dict() if name in SHIPPED_ISOLATION else None
    assert ckpt.get("reject_structures") == info.get("reject_structures") == want
    assert f"## {name}" in (PRETRAINED / "MODEL_CARD.md").read_text()


def test_predict_without_checkpoint_uses_the_shipped_model(tmp_path, capsys):
    frame = np.full((96, 120), 40, np.uint8)
    frame[40:43, 60:63] = 250
    Image.fromarray(frame).save(tmp_path / "frame.png")
    rc = main(["predict", "--input", str(tmp_path / "frame.png"), "--output", str(tmp_path / "o")])
    assert rc == 0, capsys.readouterr().err
    assert Image.open(tmp_path / "o" / "frame.png").size == (120, 96)
    table = pd.read_csv(tmp_path / "o" / "detections.csv")
    assert list(table.columns)[:2] == ["image", "target_id"]


@pytest.mark.realdata
@pytest.mark.parametrize("name", list(RECIPES))
def test_shipped_weights_reproduce_their_validation_metrics(name, sirst_root):
    from nairstd.data import open_dataset
    from nairstd.isolation import structure_test

    model, ckpt = load_model(shipped_path(name))
    recorded = ckpt["metrics"]["val_at_threshold"]
    # Native and 640x512 target-free frames (the 1920x1080 set adds a minute per model).
    sizes = ("native",) + (("640x512",) if "fa_per_frame_empty_640x512" in recorded else ())
    structures = structure_test("auto", ckpt)  # its isolation test, as predict runs it
    rows = validation_sweep(model, open_dataset(sirst_root), sizes=sizes, structures=structures)
    (row,) = [r for r in rows if r["threshold"] == ckpt["threshold"]]
    # Up to one detection per set may differ: a borderline component can flip with the CPU's
    # float rounding (the cause was not traced further). Measured: the weights recorded on an AMD EPYC give, on an
    # Intel Xeon, one false target fewer on the 640x512 target-free val frames (both shipped
    # models), everything else identical. Wrong weights, threshold, protocol or isolation test
    # move these by many detections.
    one_target = 100.0 / row["n_gt_objects"] + 1e-6
    one_frame = 1.0 / row["n_images"] + 1e-6
    assert row["Pd"] == pytest.approx(recorded["Pd"], abs=one_target)
    assert row["fa_per_frame"] == pytest.approx(recorded["fa_per_frame"], abs=one_frame)
    for key in [k for k in row if k.startswith("fa_per_frame_empty")]:
        assert row[key] == pytest.approx(recorded[key], abs=one_frame), key
    # Fa (x1e-6, SIRST val pixels): one flipped detection of up to ~12 px moves it by < 2.
    assert row["Fa"] == pytest.approx(recorded["Fa"], abs=2.0)
