"""Hostile and careless inputs (issue 10), rows 8-16 of the issue's table: NaN and signed pixels,
bad option values, score guards, run_all.sh --from and temporary files a kill left
(rows 1-7: test_hostile_inputs.py). Every bad input gives one `error: ...` line (exit 2).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    REPO,
    LocalNet,
    one_error_line,
    smoke_train_args,
)
from PIL import Image

from nairstd.cli import main as cli_main
from nairstd.data.images import read_image
from nairstd.data.index import open_dataset
from nairstd.io import save_torch
from nairstd.predict import predict_probability
from nairstd.train.checkpoint import model_checkpoint
from nairstd.train.config import profile_config
from nairstd.train.runs import run_dir
from nairstd.zoo import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


# -- rows 8-9: NaN pixels, signed data ---------------------------------------------------------
def test_nan_pixel_repaired_with_a_warning(tmp_path):
    data = np.full((16, 16), 20.0, np.float32)
    data[4, 4] = 35.0
    data[0, 0] = np.nan
    path = tmp_path / "hot.tif"
    Image.fromarray(data).save(path)
    with pytest.warns(UserWarning, match="hot.tif.*NaN"):
        image = read_image(path)
    assert np.isfinite(image).all() and image[4, 4] > image[8, 8]
    prob = predict_probability(LocalNet(), image, tile=0)
    assert np.isfinite(prob).all() and prob.std() > 0


@pytest.mark.parametrize(
    "data",
    [
        np.array([[-12.5, -3.0], [0.0, 21.5]], np.float32),  # degrees Celsius
        np.array([[-70000, -5], [0, 9]], np.int32),
    ],
)
def test_signed_data_scaled_by_its_range(data, tmp_path):
    path = tmp_path / "signed.tif"
    Image.fromarray(data).save(path)
    image = read_image(path)
    expected = (data.astype(np.float64) - data.min()) / (data.max() - data.min())
    np.testing.assert_allclose(image, expected, atol=1e-6)  # distinct values stay distinct


# -- row 10: bad values, one error line each ---------------------------------------------------
def test_checkpoint_of_another_variant(tmp_path, dataset, capsys):
    path = tmp_path / "wrong.pt"
    torch.manual_seed(0)
    ckpt = model_checkpoint(build_model("detector", "tiny"), "na_irstd", "tiny", {})
    save_torch(ckpt, path)
    assert cli_main(["eval", "--checkpoint", str(path), "--dataset", str(dataset)]) == 2
    line = one_error_line(capsys)
    assert "wrong.pt" in line and "do not fit" in line


@pytest.mark.parametrize(
    "extra, env, expect",
    [
        (["eval", "--split", "bogus"], {}, "no split 'bogus'"),
        (["train", "--model-args", "{bad"], {}, "--model-args"),
        (["train", "--model-args", "[1]"], {}, "JSON object"),
        (["eval", "--device", "bogus"], {}, "--device"),
        (["eval"], {"NAIRSTD_THREADS": "abc"}, "NAIRSTD_THREADS"),
        (["eval", "--limit", "0"], {}, "--limit"),
        (["train", "--crop", "-5"], {}, "--crop"),
        (["train", "--image-size", "3"], {}, "image_size 3 is too small for na_irstd"),
        (["train", "--image-size", "40"], {}, "multiple of the patch size 32"),
        (["train", "--crop", "16", "--model", "detector"], {}, "crop_size 16 is too small"),
        # issue 23: an option that cannot apply is refused, not silently ignored
        (["train", "--image-size", "3", "--model", "detector"], {}, "at least 32"),
        (["train", "--image-size", "32", "--model", "detector_ds2"], {}, "at least 64"),
        (["train", "--image-size", "64", "--protocol", "native"], {}, "--image-size cannot"),
        (["train", "--lr-gamma", "0.01", "--model", "detector"], {}, "model 'detector'"),
        (["train", "--lr-gamma", "0.01", "--model", "acm"], {}, "no injection scales"),
        (["train", "--lr-gamma", "0.01", "--stage", "1"], {}, "cannot apply to Stage 1"),
        (["train", "--top-k", "100000"], {}, "top_k 100000"),
        (["train", "--epochs", "x"], {}, "--epochs"),
    ],
)
def test_bad_values_one_error_line(
    extra, env, expect, checkpoint, dataset, tmp_path, monkeypatch, capsys
):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if extra[0] == "eval":
        args = ["eval", "--checkpoint", str(checkpoint), "--dataset", str(dataset), *extra[1:]]
    else:
        args = smoke_train_args(dataset, tmp_path / "runs", *extra[1:])
    try:
        rc = cli_main(args)
    except SystemExit as stop:  # argparse's own usage errors
        rc = stop.code
    assert rc == 2
    assert expect in one_error_line(capsys)


def test_options_that_apply_are_accepted():
    """The refusals above are aimed: gamma's rate for a model and stage that train gamma_l, the
    profile's own lr_gamma on a detector run (not set by the user), an image size under resize256."""
    from nairstd.train.stages import check_options_apply

    na = profile_config("quick", "2", model="na_irstd", lr_gamma=0.02, image_size=64)
    check_options_apply(na, {"lr_gamma", "image_size"})
    detector = profile_config("quick", "one", model="detector")
    assert detector.lr_gamma is not None  # the profile sets it for every one-stage run
    check_options_apply(detector, set())
    with pytest.raises(ValueError, match="--lr-gamma"):
        check_options_apply(detector, {"lr_gamma"})


def test_non_utf8_list(dataset, tmp_path, capsys):
    pred = tmp_path / "pred"
    pred.mkdir()
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"img4\n\xff\xfe\xfa\n")
    assert (
        cli_main(["score", "--pred", str(pred), "--data", str(dataset), "--list", str(listing)])
        == 2
    )
    line = one_error_line(capsys)
    assert "list.txt" in line and "UTF-8" in line


def test_corrupt_last_pt(dataset, tmp_path, capsys):
    runs = tmp_path / "runs"
    config = profile_config("smoke", "one", model="na_irstd", dataset=str(dataset), device="cpu")
    folder = run_dir(config, open_dataset(dataset), runs)
    folder.mkdir(parents=True)
    (folder / "last.pt").write_bytes(b"PK\x03\x04 truncated garbage")
    assert cli_main(smoke_train_args(dataset, runs)) == 2
    line = one_error_line(capsys)
    assert "last.pt" in line and "delete it" in line


# -- rows 12-14: score guards ------------------------------------------------------------------
def _predictions(dataset: Path, folder: Path, scale: int) -> None:
    folder.mkdir()
    for mask in (dataset / "masks").iterdir():
        Image.fromarray((np.asarray(Image.open(mask)) > 0).astype(np.uint8) * scale).save(
            folder / mask.name
        )


def test_score_warns_on_01_masks(dataset, tmp_path):
    _predictions(dataset, tmp_path / "pred", 1)
    with pytest.warns(UserWarning, match="look like 0/1 masks"):
        assert cli_main(["score", "--pred", str(tmp_path / "pred"), "--data", str(dataset)]) == 0


def test_score_json_null_without_targets(dataset, tmp_path, capsys):
    import json

    for mask in (dataset / "masks").iterdir():  # ground truth without any target
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(mask)
    _predictions(dataset, tmp_path / "pred", 255)
    assert (
        cli_main(["score", "--pred", str(tmp_path / "pred"), "--data", str(dataset), "--json"]) == 0
    )
    out = capsys.readouterr().out
    assert "NaN" not in out
    result = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert result["Pd"] is None


def test_score_rejects_repeated_stems(dataset, tmp_path, capsys):
    _predictions(dataset, tmp_path / "pred", 255)
    listing = tmp_path / "list.txt"
    listing.write_text("img4\nimg4\nimg4\n")
    args = ["score", "--pred", str(tmp_path / "pred"), "--data", str(dataset)]
    assert cli_main([*args, "--list", str(listing)]) == 2
    assert "more than once" in one_error_line(capsys)


# -- row 15: run_all.sh --from a notebook that does not exist ----------------------------------
def test_run_all_from_missing_notebook():
    done = subprocess.run(
        ["bash", str(REPO / "run_all.sh"), "--from", "99"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no notebook" in done.stderr and "done" not in done.stdout


# -- row 16: kill -9 mid-training leaves a temporary file --------------------------------------
def test_orphan_temp_files_swept(dataset, tmp_path, capsys):
    runs = tmp_path / "runs"
    config = profile_config(
        "smoke", "one", model="na_irstd", dataset=str(dataset), device="cpu", max_steps=1
    )
    folder = run_dir(config, open_dataset(dataset), runs)
    folder.mkdir(parents=True)
    orphan = folder / ".last.pt.k3j2x9.pt"
    orphan.write_bytes(b"")  # what SIGKILL during torch.save leaves
    assert cli_main(smoke_train_args(dataset, runs, "--max-steps", "1")) == 0
    assert not orphan.exists()
    assert (folder / "metrics.json").is_file()
    assert not [p for p in folder.glob(".*") if p.name != ".lock"]
