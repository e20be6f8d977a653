"""Users' files are sacred: no command writes over a file it reads (issue 23). One error line
naming both paths, nothing written, the input unchanged; symlinks and hard links count."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import one_error_line, write_tiny_checkpoint, write_toolbox_dataset
from PIL import Image

from nairstd.cli import main
from nairstd.io import InputFiles

pytestmark = pytest.mark.usefixtures("one_thread")


def test_input_files_know_every_name_of_an_input(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    weights = real / "w.pkl"
    weights.write_bytes(b"weights")
    (tmp_path / "alias").symlink_to(real)  # a symlinked folder: another path to the same file
    (tmp_path / "link.pkl").symlink_to(weights)
    os.link(weights, tmp_path / "hard.pkl")
    (tmp_path / "other.pkl").write_bytes(b"weights")  # same bytes, another file
    inputs = InputFiles([weights])
    for name in ("real/w.pkl", "real/../real/w.pkl", "alias/w.pkl", "link.pkl", "hard.pkl"):
        assert inputs.clash(tmp_path / name) == weights, name
    assert inputs.clash(tmp_path / "other.pkl") is None
    assert inputs.clash(tmp_path / "new.pt") is None
    with pytest.raises(ValueError, match=r"hard\.pkl: refusing to write over the input .*w\.pkl"):
        inputs.refuse(tmp_path / "new.pt", tmp_path / "hard.pkl")


@pytest.mark.parametrize("alias", ["same", "hardlink"])
def test_import_weights_never_writes_over_the_weights(tmp_path, capsys, alias):
    weights = tmp_path / "RPCANet.pkl"
    weights.write_bytes(b"the published weights")  # refused before it is read
    out = weights
    if alias == "hardlink":
        out = tmp_path / "out.pt"
        os.link(weights, out)
    assert main(["import-weights", "rpcanet", str(weights), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert f"{out}: refusing to write over the input {weights}" in line
    assert weights.read_bytes() == b"the published weights"


@pytest.fixture
def scored(tmp_path):
    """A toolbox dataset and a folder of perfect predictions for its test split."""
    data = write_toolbox_dataset(tmp_path, "TOY", n=4)
    pred = tmp_path / "pred"
    pred.mkdir()
    for stem in ("img2", "img3"):
        mask = np.asarray(Image.open(data / "masks" / f"{stem}.png"))
        Image.fromarray(mask).save(pred / f"{stem}.png")
    return data, pred


@pytest.mark.parametrize("where", ["prediction", "split list"])
def test_score_sweep_never_writes_over_a_prediction_or_data_file(scored, capsys, where):
    data, pred = scored
    # pred/img2.csv puts its figure on the prediction pred/img2.png; the CSV on the split list.
    sweep = pred / "img2.csv" if where == "prediction" else data / "img_idx" / "test_TOY.txt"
    victim = pred / "img2.png" if where == "prediction" else sweep
    before = victim.read_bytes()
    assert main(["score", "--pred", str(pred), "--data", str(data), "--sweep", str(sweep)]) == 2
    line = one_error_line(capsys)
    assert "refusing to write over the input" in line and str(victim) in line
    assert victim.read_bytes() == before and not (pred / "img2.csv").exists()


def test_predict_never_writes_detections_over_an_input(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    frame = out / "detections.csv"  # an input that predict would replace with its table
    frame.write_text("image,target_id\nmine,1\n")
    ckpt = write_tiny_checkpoint(tmp_path / "c.pt", top_k=3)
    args = ["predict", "--checkpoint", str(ckpt), "--input", str(frame), "--output", str(out)]
    assert main(args) == 2
    assert "refusing to write over the input" in one_error_line(capsys)
    assert frame.read_text() == "image,target_id\nmine,1\n"


def test_data_hard_never_replaces_a_source_folder(tmp_path, capsys):
    source = write_toolbox_dataset(tmp_path / "data", "IRSTD-Hard", n=4)
    before = sorted(p.name for p in (source / "images").iterdir())
    assert main(["data", "hard", str(source), "--out", str(source.parent)]) == 2
    line = one_error_line(capsys)
    assert "refusing to replace" in line and str(source) in line
    assert sorted(p.name for p in (source / "images").iterdir()) == before


def test_shipped_export_never_writes_over_its_run(tmp_path):
    from nairstd import shipped
    from nairstd.io import save_torch
    from nairstd.train.checkpoint import model_checkpoint
    from nairstd.zoo import build_model

    data = write_toolbox_dataset(tmp_path, "TOY", n=4)
    run = tmp_path / "run"
    run.mkdir()
    torch.manual_seed(0)
    config = {"dataset": str(data), "protocol": "native"}
    save_torch(
        model_checkpoint(build_model("detector", "tiny"), "detector", "tiny", {}, config=config),
        run / "best.pt",
    )
    out = tmp_path / "out"
    out.mkdir()
    (out / "detector.pt").symlink_to(run / "best.pt")
    before = (run / "best.pt").read_bytes()
    with pytest.raises(ValueError, match=r"detector\.pt: refusing to write over the input .*best"):
        shipped.export("detector", run, out)
    assert (run / "best.pt").read_bytes() == before


def test_shipped_card_never_writes_over_a_summary(tmp_path, capsys):
    from nairstd import shipped

    (tmp_path / "na_irstd.json").write_text("{}")
    os.link(tmp_path / "na_irstd.json", tmp_path / "MODEL_CARD.md")
    assert shipped.main(["--card-only", "--out", str(tmp_path)]) == 2
    line = one_error_line(capsys)
    assert "MODEL_CARD.md: refusing to write over the input" in line and "na_irstd.json" in line
    assert (tmp_path / "na_irstd.json").read_text() == "{}"
