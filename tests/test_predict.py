"""`predict`: any image kind and size in, same-size probability PNGs + detections.csv out; a bad
file is named and skipped with exit status 1."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_tiny_checkpoint
from PIL import Image
from torch import nn

from nairstd.cli import main as cli_main
from nairstd.predict import detections, predict_files

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def checkpoint(tmp_path):
    return write_tiny_checkpoint(tmp_path / "ckpt.pt", top_k=3)


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8), "RGB").save(
        folder / "colour.png"
    )
    g16 = rng.integers(0, 65535, (48, 64), dtype=np.uint16)
    Image.fromarray(g16).save(folder / "deep.png")  # 16-bit grey (I;16)
    Image.fromarray(rng.integers(0, 255, (37, 45), dtype=np.uint8)).save(folder / "odd.tif")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "notes.txt").write_text("not an image, ignored in folders")
    return folder


SIZES = {"colour": (70, 50), "deep": (64, 48), "odd": (45, 37)}


@pytest.mark.parametrize("protocol", ["native", "resize256"])
def test_predict_cli_folder(checkpoint, inputs, tmp_path, capsys, protocol):
    assert Image.open(inputs / "deep.png").mode.startswith("I")
    out = tmp_path / f"out-{protocol}"
    rc = cli_main(
        [
            "predict",
            "--checkpoint",
            str(checkpoint),
            "--input",
            str(inputs),
            "--output",
            str(out),
            "--protocol",
            protocol,
            "--device",
            "cpu",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1
    assert "broken.png" in captured.err or "broken.png" in captured.out
    for stem, size in SIZES.items():
        png = Image.open(out / f"{stem}.png")
        assert png.size == size and png.mode == "L", stem
    assert not (out / "broken.png").exists()
    table = pd.read_csv(out / "detections.csv")
    assert list(table.columns) == ["image", "target_id", "x", "y", "area", "peak_probability"]


def test_predict_all_good_exit_zero(checkpoint, inputs, tmp_path):
    rc = cli_main(
        [
            "predict",
            "--checkpoint",
            str(checkpoint),
            "--input",
            str(inputs / "colour.png"),
            str(inputs / "odd.tif"),
            "--output",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "colour.png",
        "detections.csv",
        "odd.png",
    ]


class BrightSpot(nn.Module):
    """Logits +10 where the standardised input is bright, -10 elsewhere."""

    def forward(self, x):
        return torch.where(x > 2.0, 10.0, -10.0)


def test_predict_maps_and_detections_content(tmp_path):
    image = np.full((40, 52), 30, np.uint8)
    image[10:13, 20:24] = 250  # 12 px target, centroid x 21.5, y 11
    image[30, 5] = 250  # 1 px target
    Image.fromarray(image).save(tmp_path / "scene.png")
    result = predict_files(BrightSpot(), [tmp_path / "scene.png"], tmp_path / "out", device="cpu")
    assert result.ok and len(result.written) == 1
    prob = np.asarray(Image.open(tmp_path / "out" / "scene.png"))
    assert prob.shape == (40, 52)
    assert prob[11, 21] == 255 and prob[0, 0] == 0
    table = pd.read_csv(tmp_path / "out" / "detections.csv")
    assert len(table) == 2
    big = table.sort_values("area").iloc[-1]
    assert (big["image"], big["area"]) == ("scene.png", 12)
    assert big["x"] == pytest.approx(21.5) and big["y"] == pytest.approx(11.0)
    assert big["peak_probability"] == pytest.approx(1.0, abs=1e-4)


def test_detections_of_a_probability_map():
    prob = np.zeros((10, 10), np.float32)
    prob[2:4, 2:4] = [[0.6, 0.7], [0.9, 0.8]]
    prob[8, 8] = 0.4  # below the threshold: no target
    rows = detections(prob, "a.png")
    assert len(rows) == 1
    assert rows[0]["area"] == 4 and rows[0]["peak_probability"] == pytest.approx(0.9)
    assert (rows[0]["x"], rows[0]["y"]) == (2.5, 2.5)


def test_missing_input_and_overwrite_guard(checkpoint, tmp_path, capsys):
    folder = tmp_path / "same"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "a.png")
    args = ["predict", "--checkpoint", str(checkpoint), "--output", str(folder), "--input"]
    rc = cli_main([*args, str(folder / "a.png"), str(tmp_path / "missing.png")])
    err = capsys.readouterr().err
    assert rc == 1 and "missing.png" in err and "a.png" in err
    assert np.asarray(Image.open(folder / "a.png")).max() == 0  # the input was not overwritten


@pytest.mark.parametrize("max_pixels", [10**9, 0])  # overlapped, and every image run alone
def test_overlapped_pipeline_order_and_failures(tmp_path, monkeypatch, max_pixels):
    from nairstd import predict as predict_module

    monkeypatch.setattr(predict_module, "OVERLAP_MAX_PIXELS", max_pixels)
    plan = []
    for i in range(6):
        file = tmp_path / f"img{i}.png"
        image = np.zeros((16, 16), np.uint8)
        image[4:6, 4:6] = 200 + i
        Image.fromarray(image).save(file)
        plan.append((file, tmp_path / "out" / file.name))
    plan[1][0].write_bytes(b"not a png")  # read fails
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "img4.png").mkdir()  # write fails: a folder is in the way

    def infer(image):
        if image.max() == np.float32(203 / 255):  # img3: the model fails
            raise RuntimeError("model failed")
        return (image > 0.5).astype(np.float32)

    events = []
    predict_module.run_overlapped(
        plan,
        infer,
        lambda f, t, rows: events.append((f.name, "ok", len(rows))),
        lambda f, t, err: events.append((f.name, "failed", type(err).__name__)),
    )
    assert [e[0] for e in events] == [f"img{i}.png" for i in range(6)]
    assert [e[1] for e in events] == ["ok", "failed", "ok", "failed", "failed", "ok"]
    assert events[0][2] == 1 and events[3][2] == "RuntimeError"
    assert np.asarray(Image.open(tmp_path / "out" / "img5.png")).max() == 255
