"""Hostile and careless inputs (issue 10): each row of the issue's table as a test.

Every bad input gives one `error: ...` line (exit 2) or a named per-image failure (exit 1);
nothing is executed from a checkpoint, nothing is overwritten, nothing is lost.
All files are generated here and small: the whole module runs in seconds.
"""

from __future__ import annotations

import errno
import os
import shlex
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, write_toolbox_dataset
from PIL import Image
from torch import nn

from nairstd.cli import main as cli_main
from nairstd.data.images import DataError, read_image
from nairstd.data.index import open_dataset
from nairstd.io import save_torch
from nairstd.models import build_model
from nairstd.train import predict as predict_module
from nairstd.train.checkpoint import model_checkpoint
from nairstd.train.config import profile_config
from nairstd.train.predict import predict_files, predict_probability, tile_windows
from nairstd.train.runs import RunInProgress, run_dir, run_id, run_lock


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "ckpt.pt"
    save_torch(model_checkpoint(build_model("na_irstd", "tiny"), "na_irstd", "tiny", {}), path)
    return path


@pytest.fixture
def dataset(tmp_path) -> Path:
    return write_toolbox_dataset(tmp_path / "data", "tinyset", n=6, size=(64, 64))


def one_error_line(capsys) -> str:
    """The run printed exactly one `error:` line on stderr and no traceback; returns it."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


def smoke_train_args(data: Path, runs: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--stage",
        "one",
        "--model",
        "na_irstd",
        "--dataset",
        str(data),
        "--profile",
        "smoke",
        "--out",
        str(runs),
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


# -- row 1: a checkpoint whose unpickling runs code --------------------------------------------
class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


@pytest.fixture
def evil_checkpoint(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    ckpt = model_checkpoint(build_model("na_irstd", "tiny"), "na_irstd", "tiny", {})
    torch.save({**ckpt, "payload": _Payload(marker)}, path)
    assert not marker.exists()
    return path, marker


@pytest.mark.parametrize("verb", ["predict", "eval", "train-init"])
def test_pickle_payload_never_runs(verb, evil_checkpoint, dataset, tmp_path, capsys):
    path, marker = evil_checkpoint
    if verb == "predict":
        image = tmp_path / "x.png"
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
        args = ["predict", "--checkpoint", str(path), "--input", str(image)]
        args += ["--output", str(tmp_path / "o"), "--device", "cpu"]
    elif verb == "eval":
        args = ["eval", "--checkpoint", str(path), "--dataset", str(dataset), "--device", "cpu"]
    else:
        args = smoke_train_args(dataset, tmp_path / "runs", "--init", str(path))
        args[args.index("one")] = "2"
    assert cli_main(args) == 2
    line = one_error_line(capsys)
    assert "evil.pt" in line and "refused" in line
    assert not marker.exists(), "the checkpoint's pickled code ran"


# -- row 2: predict into the input folder ------------------------------------------------------
def test_predict_never_overwrites_an_input(checkpoint, tmp_path, capsys):
    folder = tmp_path / "s"
    folder.mkdir()
    Image.fromarray(np.full((20, 24), 90, np.uint8)).save(folder / "scene.png")
    Image.fromarray(np.full((20, 24), 30, np.uint8)).save(folder / "scene.tif")
    Image.fromarray(np.full((20, 24), 60, np.uint8)).save(folder / "other.tif")
    before = (folder / "scene.png").read_bytes()
    args = ["predict", "--checkpoint", str(checkpoint), "--input", str(folder)]
    rc = cli_main([*args, "--output", str(folder), "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 1
    assert (folder / "scene.png").read_bytes() == before  # the input is untouched
    assert "scene.png" in captured.err and "scene.tif" in captured.err
    assert (folder / "other.png").is_file()  # the safe input was processed
    table = pd.read_csv(folder / "detections.csv")
    assert set(table["image"]) <= {"other.tif"}


# -- row 3: a different dataset folder with the same name and split sizes ----------------------
def test_run_cache_key_follows_the_files(tmp_path):
    a = write_toolbox_dataset(tmp_path / "a", "tinyset", n=6, size=(64, 64))
    b = write_toolbox_dataset(tmp_path / "b", "tinyset", n=6, size=(64, 64))
    config = profile_config("smoke", "one", dataset="tinyset")
    id_a, id_b = run_id(config, open_dataset(a)), run_id(config, open_dataset(b))
    assert id_a != id_b  # same name and split sizes, other folder
    # Blank every mask in place: the same folder now names another run.
    for mask in (a / "masks").iterdir():
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(mask)
        os.utime(mask, ns=(1, 1))
    assert run_id(config, open_dataset(a)) != id_a


# -- row 4: the same train command twice at once -----------------------------------------------
def test_second_train_of_a_live_run_says_in_progress(dataset, tmp_path, capsys):
    runs = tmp_path / "runs"
    config = profile_config("smoke", "one", model="na_irstd", dataset=str(dataset), device="cpu")
    folder = run_dir(config, open_dataset(dataset), runs)
    with run_lock(folder):  # what the first process holds while it trains
        assert cli_main(smoke_train_args(dataset, runs)) == 2
        line = one_error_line(capsys)
        assert f"in progress (pid {os.getpid()})" in line
        with pytest.raises(RunInProgress):
            with run_lock(folder):
                pass
    assert not (folder / "last.pt").exists()  # the second process wrote nothing


# -- row 5: a huge frame runs in bounded windows, stitched without seams -----------------------
class LocalNet(nn.Module):
    """A purely local net (receptive field 7 px < the 32 px margin): tiling must be exact."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 5, padding=2)
        )

    def forward(self, x):
        return self.body(x)


def test_tiled_equals_whole_for_a_local_net():
    image = np.random.default_rng(0).random((300, 420), dtype=np.float32)
    whole = predict_probability(LocalNet(), image, tile=0)
    tiled = predict_probability(LocalNet(), image, tile=128, margin=32)
    # Same arithmetic on the same pixels: only float summation order may differ.
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_tiled_close_to_whole_for_na_irstd():
    """na_irstd has image-wide parts (Top-K over the image's patches, decoder queries attending
    to every pixel), so windows cannot be bit-exact; measured max |diff| 4e-4 here. We require
    under one 8-bit output level (1/255), i.e. the written PNGs differ by at most 1."""
    torch.manual_seed(0)
    model = build_model("na_irstd", "tiny").eval()
    rng = np.random.default_rng(0)
    image = (rng.random((300, 420), dtype=np.float32) * 0.2 + 0.3).astype(np.float32)
    image[100:103, 200:203] = 1.0
    whole = predict_probability(model, image, tile=0)
    tiled = predict_probability(model, image, tile=256, margin=64)
    assert np.abs(tiled - whole).max() < 1.0 / 255.0


def test_large_image_never_reaches_the_model_whole(tmp_path):
    shapes: list[tuple[int, int]] = []

    class Recorder(LocalNet):
        def forward(self, x):
            shapes.append(tuple(x.shape[-2:]))
            return super().forward(x)

    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((200, 700), np.uint8)).save(path)
    result = predict_files(Recorder(), [path], tmp_path / "o", device="cpu", tile=256)
    assert result.ok and Image.open(tmp_path / "o" / "wide.png").size == (700, 200)
    assert max(max(s) for s in shapes) <= 256 and len(shapes) == len(tile_windows(200, 700, 256))


# -- row 6: a decompression bomb ---------------------------------------------------------------
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_decompression_bomb_refused(checkpoint, tmp_path, capsys):
    bomb = tmp_path / "bomb.png"  # a 20000x20000 header over a few bytes of data
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * 20001 * 4)
    bomb.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )
    with pytest.raises(DataError, match="bomb.png: .*decompression bomb"):
        read_image(bomb)
    ok = tmp_path / "ok.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(ok)
    out = tmp_path / "o"
    args = ["predict", "--checkpoint", str(checkpoint), "--input", str(bomb), str(ok)]
    assert cli_main([*args, "--output", str(out), "--device", "cpu"]) == 1
    assert "bomb.png" in capsys.readouterr().err
    assert (out / "ok.png").is_file() and (out / "detections.csv").is_file()


# -- row 7: an unusable output folder, disk full ----------------------------------------------
def test_output_is_a_file(checkpoint, tmp_path, capsys):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    out = tmp_path / "taken"
    out.write_text("a file")
    args = ["predict", "--checkpoint", str(checkpoint), "--input", str(image)]
    assert cli_main([*args, "--output", str(out)]) == 2
    assert "taken" in one_error_line(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_not_writable(checkpoint, tmp_path, capsys):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    out = tmp_path / "ro"
    out.mkdir(mode=0o500)
    args = ["predict", "--checkpoint", str(checkpoint), "--input", str(image)]
    assert cli_main([*args, "--output", str(out)]) == 2
    assert "not writable" in one_error_line(capsys)


def test_disk_full_keeps_the_detections_done(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        image = np.zeros((32, 32), np.uint8)
        image[10:13, 10:13] = 255
        Image.fromarray(image).save(folder / f"img{i}.png")
    real_save = predict_module.save_png

    def save_png(array, path, **options):
        if Path(path).name == "img1.png":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(array, path, **options)

    monkeypatch.setattr(predict_module, "save_png", save_png)
    out = tmp_path / "o"
    rc = cli_main(
        ["predict", "--checkpoint", "tophat", "--input", str(folder), "--output", str(out)]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "img1.png" in err and "No space left" in err
    table = pd.read_csv(out / "detections.csv")
    assert set(table["image"]) == {"img0.png", "img2.png"}


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
        (["train", "--image-size", "3"], {}, "multiple of the patch size"),
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
