"""The run cache: `outputs/runs/<run-id>/` holds one training run.

    config.json   the TrainConfig, the run id and what it was hashed from
    last.pt       resume state (model, optimiser, scheduler, epoch/step, RNG states, log rows),
                  rewritten every `ckpt_every` steps and after every epoch
    best.pt       the selected model (best validation score), a self-describing checkpoint
    log.csv       one row per epoch (losses, learning rates, validation metrics, time)
    metrics.json  written last, when the run is complete: validation metrics of best.pt

run-id = readable prefix + 8 hex digits of the hash of everything that changes the result
(the config, the dataset's identity, the Stage-1 run a Stage-2 run starts from), e.g.
`na_irstd-tiny-s1-soft-SIRST-quick-1a2b3c4d`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nairstd.data.index import DatasetIndex
from nairstd.paths import outputs_root
from nairstd.train.config import TrainConfig, config_hash


def runs_root(runs_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the runs: `runs_dir`, else `<outputs>/runs`."""
    return Path(runs_dir).expanduser().resolve() if runs_dir else outputs_root() / "runs"


def dataset_identity(index: DatasetIndex) -> dict[str, Any]:
    """What names a dataset for the cache: its name and split sizes (smoke vs quick data differ)."""
    return {
        "name": index.name,
        "train": len(index.split("train")),
        "val": len(index.split("val")),
    }


def init_identity(init_from: str | os.PathLike | None) -> str | None:
    """The run id of the Stage-1 run a Stage-2 run starts from (path-independent), else a
    content hash of the checkpoint file."""
    if init_from is None:
        return None
    path = Path(init_from)
    folder = path if path.is_dir() else path.parent
    config_file = folder / "config.json"
    if config_file.is_file():
        return json.loads(config_file.read_text())["run_id"]
    import hashlib

    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def run_key(config: TrainConfig, index: DatasetIndex) -> dict[str, Any]:
    key = config.hashed_fields()
    key["dataset"] = dataset_identity(index)
    key["init_from"] = init_identity(config.init_from)
    return key


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_") or "x"


def run_prefix(config: TrainConfig, index: DatasetIndex) -> str:
    stage = {"1": f"s1-{config.label}", "2": f"s2-{config.label}", "one": "one"}[config.stage]
    if config.stage == "one" and config.model in ("na_irstd", "dense_cnn"):
        stage = f"one-{config.label}"
    return _slug(f"{config.model}-{config.size}-{stage}-{index.name}-{config.profile}")


def run_id(config: TrainConfig, index: DatasetIndex) -> str:
    return f"{run_prefix(config, index)}-{config_hash(run_key(config, index))}"


def run_dir(
    config: TrainConfig, index: DatasetIndex, runs_dir: str | os.PathLike | None = None
) -> Path:
    return runs_root(runs_dir) / run_id(config, index)


def is_complete(folder: str | os.PathLike) -> bool:
    folder = Path(folder)
    metrics = folder / "metrics.json"
    if not metrics.is_file() or not (folder / "best.pt").is_file():
        return False
    try:
        return bool(json.loads(metrics.read_text()).get("complete"))
    except json.JSONDecodeError:
        return False


@dataclass
class RunResult:
    """A finished (or reused) run: where it lives, its config and its final metrics."""

    run_dir: Path
    config: TrainConfig
    metrics: dict[str, Any] = field(default_factory=dict)
    reused: bool = False  # True when the cache already held the finished run

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / "best.pt"

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def log(self) -> pd.DataFrame:
        return pd.read_csv(self.run_dir / "log.csv")

    def load_model(self, device: str = "cpu"):
        """The selected model (best.pt), in eval mode."""
        from nairstd.train.checkpoint import load_model

        return load_model(self.best_checkpoint, device)[0]


def load_result(folder: str | os.PathLike, reused: bool = True) -> RunResult:
    folder = Path(folder)
    config = TrainConfig.from_dict(json.loads((folder / "config.json").read_text())["config"])
    metrics_file = folder / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return RunResult(folder, config, metrics, reused)


def list_runs(runs_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per run in the cache: id, model, stage, dataset, profile, complete, best val score."""
    rows = []
    root = runs_root(runs_dir)
    for folder in sorted(root.glob("*/config.json")) if root.is_dir() else []:
        folder = folder.parent
        info = json.loads((folder / "config.json").read_text())
        c = info["config"]
        metrics = {}
        if (folder / "metrics.json").is_file():
            metrics = json.loads((folder / "metrics.json").read_text())
        rows.append(
            {
                "run_id": folder.name,
                "model": c["model"],
                "size": c["size"],
                "stage": c["stage"],
                "label": c["label"],
                "dataset": info.get("dataset", {}).get("name", c["dataset"]),
                "profile": c.get("profile"),
                "complete": is_complete(folder),
                "best_epoch": metrics.get("best_epoch"),
                "val_IoU": metrics.get("val", {}).get("IoU"),
                "val_coverage": metrics.get("val", {}).get("coverage"),
            }
        )
    return pd.DataFrame(rows)
