"""Training: L_seg, the three stages in the smoke profile, the run cache, resume after SIGKILL,
repeatability, Stage-2 parameter groups, the eval CLI, and a two-process gloo (DDP) run."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from nairstd.cli import main as cli_main
from nairstd.losses import bce_loss, dice_loss, seg_loss
from nairstd.train import load_model, profile_config, read_checkpoint, train
from nairstd.train.config import TrainConfig
from nairstd.train.stages import Stage1Missing, param_groups

REPO = Path(__file__).resolve().parents[1]
RUN_FILES = ("config.json", "last.pt", "best.pt", "log.csv", "metrics.json")


# --------------------------------------------------------------------------------------------------
# A tiny on-disk dataset (layout b with train/val/test lists): 64x64 images, 1-2 bright targets.
# --------------------------------------------------------------------------------------------------
def make_dataset(root: Path, name: str = "tinyset", n: int = 14, size: int = 64) -> Path:
    folder = root / name
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(0)
    stems = []
    for i in range(n):
        image = (rng.normal(60, 8, (size, size))).clip(0, 255)
        mask = np.zeros((size, size), bool)
        for _ in range(1 + i % 2):
            y, x = rng.integers(4, size - 6, 2)
            mask[y : y + 3, x : x + 3] = True
        image[mask] = 230
        stem = f"im{i:02d}"
        stems.append(stem)
        Image.fromarray(image.astype(np.uint8)).save(folder / "images" / f"{stem}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / f"{stem}.png")
    (folder / "img_idx").mkdir()
    parts = {"train": stems[:8], "val": stems[8:11], "test": stems[11:]}
    for split, names in parts.items():
        (folder / "img_idx" / f"{split}_{name}.txt").write_text("\n".join(names) + "\n")
    return folder


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("traindata"))


def smoke(stage: str, data: Path, **fields) -> TrainConfig:
    """Smoke-profile config on the tiny dataset: 64x64 images, 32 px crops, 2 epochs x 2 steps."""
    base = dict(dataset=str(data), image_size=64, crop_size=32, val_limit=3)
    base.update(fields)
    return profile_config("smoke", stage, **base)


def quiet(_line: str) -> None:
    pass


# --------------------------------------------------------------------------------------------------
# L_seg
# --------------------------------------------------------------------------------------------------
def test_seg_loss_hand_cases():
    target = torch.zeros(2, 1, 8, 8)
    target[0, 0, 2:4, 2:4] = 1  # 4 target pixels in image 0, none in image 1
    perfect = (target * 2 - 1) * 30  # sigmoid ~ exactly the target
    assert dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    assert bce_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    assert seg_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)

    zero = torch.zeros_like(target)  # p = 0.5 everywhere
    assert bce_loss(zero, target).item() == pytest.approx(math.log(2), rel=1e-6)
    # Dice per image with eps = 1, then averaged: image 0 has 4 target pixels of 64.
    d0 = 1 - (2 * 0.5 * 4 + 1) / (0.5 * 64 + 4 + 1)
    d1 = 1 - (0 + 1) / (0.5 * 64 + 0 + 1)
    assert dice_loss(zero, target).item() == pytest.approx((d0 + d1) / 2, rel=1e-6)
    assert seg_loss(zero, target).item() == pytest.approx(math.log(2) + (d0 + d1) / 2, rel=1e-6)
    # Inverted prediction: p = 1 on the 60 background pixels, 0 on the 4 targets.
    wrong = -perfect
    assert dice_loss(wrong[:1], target[:1]).item() == pytest.approx(1 - 1 / 65, abs=1e-5)


# --------------------------------------------------------------------------------------------------
# Stages, cache, Stage 2 contract
# --------------------------------------------------------------------------------------------------
def test_stage1_then_stage2_smoke_cache_and_frozen_scorer(tiny_data, tmp_path):
    runs = tmp_path / "runs"
    s1 = train(smoke("1", tiny_data), runs_dir=runs, log=quiet)
    assert not s1.reused
    for name in RUN_FILES:
        assert (s1.run_dir / name).is_file(), name
    assert s1.run_dir.name.startswith("na_irstd-tiny-s1-soft-tinyset-smoke-")
    assert s1.metrics["complete"] and s1.metrics["steps"] == 4
    log = pd.read_csv(s1.run_dir / "log.csv")
    assert list(log["epoch"]) == [1, 2] and {"loss", "val_coverage", "lr"} <= set(log.columns)

    # Cache: the same config returns at once and rewrites nothing.
    stamp = {n: (s1.run_dir / n).stat().st_mtime_ns for n in RUN_FILES}
    again = train(smoke("1", tiny_data), runs_dir=runs, log=quiet)
    assert again.reused and again.run_dir == s1.run_dir
    assert stamp == {n: (s1.run_dir / n).stat().st_mtime_ns for n in RUN_FILES}

    # Without the auto-training, a missing Stage 1 is reported with the command to run.
    with pytest.raises(Stage1Missing, match="--stage 1"):
        train(smoke("2", tiny_data, label="hard"), runs_dir=runs, auto_stage1=False, log=quiet)

    # Stage 2 finds the cached Stage-1 run (no retraining), keeps the scorer frozen.
    s2 = train(smoke("2", tiny_data), runs_dir=runs, log=quiet)
    assert stamp == {n: (s1.run_dir / n).stat().st_mtime_ns for n in RUN_FILES}
    assert s2.config.init_from == str(s1.run_dir / "best.pt")
    for name in RUN_FILES:
        assert (s2.run_dir / name).is_file(), name
    assert s2.metrics["steps"] == 4 and "IoU" in s2.metrics["val"]
    before = read_checkpoint(s1.run_dir)["state_dict"]
    after = read_checkpoint(s2.run_dir)["state_dict"]
    model = s2.load_model()
    scorer_ids = {id(p) for p in model.scorer_parameters()}
    names = [n for n, p in model.named_parameters() if id(p) in scorer_ids]
    native_ids = {id(p) for p in model.native_parameters()}
    native_names = [n for n, p in model.named_parameters() if id(p) in native_ids]
    assert names and native_names
    for n in names:
        assert torch.equal(before[n], after[n]), f"scorer weight {n} changed in Stage 2"
    assert any(not torch.equal(before[n], after[n]) for n in native_names)
    log2 = pd.read_csv(s2.run_dir / "log.csv")
    assert {"lr", "lr_native", "val_IoU", "val_coverage"} <= set(log2.columns)


def test_stage2_param_groups():
    from nairstd.zoo import build_model

    cfg = TrainConfig(stage="2", lr_main=5e-4, lr_native=1e-4)
    model = build_model("na_irstd", "tiny")
    groups = param_groups(model, cfg)
    assert [g["lr"] for g in groups] == [5e-4, 1e-4]
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped))
    scorer = {id(p) for p in model.scorer_parameters()}
    assert not scorer & set(grouped)
    assert all(not p.requires_grad for p in model.scorer_parameters())
    assert set(grouped) | scorer == {id(p) for p in model.parameters()}
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.native_parameters()}
    # Stage 1: only native branch + scorer train.
    groups1 = param_groups(model, TrainConfig(stage="1", lr_stage1=1e-3))
    trainable = {id(p) for p in groups1[0]["params"]}
    assert trainable == {id(p) for p in model.native_parameters()} | scorer
    assert [g["lr"] for g in groups1] == [1e-3]
    with pytest.raises(ValueError, match="native branch"):
        param_groups(build_model("detector", "tiny"), TrainConfig(stage="2"))


def test_one_stage_smoke_native_and_plain_model(tiny_data, tmp_path):
    one = train(smoke("one", tiny_data), runs_dir=tmp_path, log=quiet)
    log = pd.read_csv(one.run_dir / "log.csv")
    assert {"loss_seg", "loss_score"} <= set(log.columns)
    det = train(smoke("one", tiny_data, model="detector"), runs_dir=tmp_path, log=quiet)
    assert det.run_dir.name.startswith("detector-tiny-one-tinyset-smoke-")
    assert det.metrics["complete"] and "IoU" in det.metrics["val"]
    assert load_model(det.run_dir)[1]["model"] == "detector"


# --------------------------------------------------------------------------------------------------
# Repeatability and resume after SIGKILL
# --------------------------------------------------------------------------------------------------
RESUME_FIELDS = dict(epochs=3, epoch_steps=3, ckpt_every=2, batch_size=2)


def _losses(run_dir: Path) -> list[float]:
    return pd.read_csv(run_dir / "log.csv")["loss"].tolist()


def test_same_seed_same_losses(tiny_data, tmp_path):
    a = train(smoke("one", tiny_data, **RESUME_FIELDS), runs_dir=tmp_path / "a", log=quiet)
    b = train(smoke("one", tiny_data, **RESUME_FIELDS), runs_dir=tmp_path / "b", log=quiet)
    assert a.run_dir.name == b.run_dir.name
    assert _losses(a.run_dir) == _losses(b.run_dir)
    sa, sb = read_checkpoint(a.run_dir)["state_dict"], read_checkpoint(b.run_dir)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = train(smoke("one", tiny_data, seed=1, **RESUME_FIELDS), runs_dir=tmp_path / "c", log=quiet)
    assert c.run_dir.name != a.run_dir.name and _losses(c.run_dir) != _losses(a.run_dir)


KILL_SCRIPT = """
import sys, time
from nairstd.train import profile_config, train
cfg = profile_config("smoke", "one", dataset=sys.argv[1], image_size=64, crop_size=32,
                     val_limit=3, **{fields})
train(cfg, runs_dir=sys.argv[2], progress=False, on_step=lambda step: time.sleep(0.4))
"""


def test_kill_mid_epoch_and_resume(tiny_data, tmp_path):
    runs = tmp_path / "runs"
    script = KILL_SCRIPT.replace("{fields}", repr(RESUME_FIELDS))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script, str(tiny_data), str(runs)], env=env)
    try:
        deadline = time.time() + 120
        last = None
        while time.time() < deadline and proc.poll() is None:
            found = list(runs.glob("*/last.pt"))
            if found:
                last = found[0]
                break
            time.sleep(0.05)
        assert last is not None, "no step checkpoint appeared"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    state = ckpt["state"]
    total = RESUME_FIELDS["epochs"] * RESUME_FIELDS["epoch_steps"]
    assert 0 < state["global_step"] < total
    assert state["step_in_epoch"] > 0, "the kill should land mid-epoch (step checkpoint)"
    assert not (last.parent / "metrics.json").exists()

    lines: list[str] = []
    result = train(smoke("one", tiny_data, **RESUME_FIELDS), runs_dir=runs, log=lines.append)
    assert result.run_dir == last.parent and not result.reused
    assert any("resuming" in line for line in lines)
    assert result.metrics["complete"] and result.metrics["steps"] == total
    final = torch.load(result.run_dir / "last.pt", map_location="cpu", weights_only=True)
    assert final["state"]["global_step"] == total
    model, _ = load_model(result.run_dir)
    assert model(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 64, 64)
    # Resuming gives exactly the uninterrupted run.
    ref = train(smoke("one", tiny_data, **RESUME_FIELDS), runs_dir=tmp_path / "ref", log=quiet)
    assert _losses(result.run_dir) == _losses(ref.run_dir)


# --------------------------------------------------------------------------------------------------
# CLI: eval JSON, train errors, DDP (gloo, two processes)
# --------------------------------------------------------------------------------------------------
def test_eval_cli_json(tiny_data, tmp_path, capsys):
    run = train(smoke("1", tiny_data), runs_dir=tmp_path, log=quiet)
    s2 = train(smoke("2", tiny_data), runs_dir=tmp_path, log=quiet)
    capsys.readouterr()
    for protocol in ("resize256", "native"):
        rc = cli_main(
            [
                "eval",
                "--checkpoint",
                str(s2.run_dir / "best.pt"),
                "--dataset",
                str(tiny_data),
                "--split",
                "test",
                "--protocol",
                protocol,
                "--json",
            ]
        )
        assert rc == 0
        result = json.loads(capsys.readouterr().out)
        for key in ("IoU", "nIoU", "Pd", "Fa", "FA_per_image", "coverage", "precision", "top_k"):
            assert key in result, key
        assert result["n_images"] == 3 and result["protocol"] == protocol
    # A Stage-1 checkpoint evaluates too (its untrained detector), and a bad path exits 2.
    assert cli_main(["eval", "--checkpoint", str(run.run_dir), "--dataset", str(tiny_data)]) == 0
    assert "coverage" in capsys.readouterr().out
    missing = str(tmp_path / "nope.pt")
    assert cli_main(["eval", "--checkpoint", missing, "--dataset", str(tiny_data)]) == 2
    assert "nope.pt" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_process_gloo_smoke(tiny_data, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "nairstd",
        "train",
        "--stage",
        "2",
        "--dataset",
        str(tiny_data),
        "--profile",
        "smoke",
        "--image-size",
        "64",
        "--crop",
        "32",
        "--batch-size",
        "4",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    # Own session: on a timeout the launcher and both workers are killed together.
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"torchrun timed out:\n{stdout}\n{stderr}")
    assert proc.returncode == 0, stdout + stderr
    runs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert len(runs) == 2  # Stage 1 trained first, then Stage 2
    for name in runs:
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        assert metrics["complete"] and metrics["world_size"] == 2 and metrics["steps"] == 4
    assert stdout.count("finished:") == 1  # rank 0 alone prints
    assert stdout.count("training it first") == 1


def test_train_cli_init_and_missing_stage1(tiny_data, tmp_path, capsys):
    common = ["--dataset", str(tiny_data), "--profile", "smoke", "--image-size", "64"]
    common += ["--crop", "32", "--out", str(tmp_path), "--no-progress"]
    assert cli_main(["train", "--stage", "2", "--no-auto-stage1", *common]) == 2
    assert "--stage 1" in capsys.readouterr().err
    assert cli_main(["train", "--stage", "1", "--label", "hard", *common]) == 0
    (s1,) = [p for p in tmp_path.iterdir() if "-s1-hard-" in p.name]
    capsys.readouterr()
    assert cli_main(["train", "--stage", "2", "--init", str(s1), *common, "--json"]) == 0
    out = capsys.readouterr().out
    info = json.loads(out[out.index("{") :])
    assert "-s2-hard-" in Path(info["run_dir"]).name and info["complete"]
    # The same command again reuses the finished run.
    assert cli_main(["train", "--stage", "2", "--init", str(s1), *common]) == 0
    assert "reused finished run" in capsys.readouterr().out
