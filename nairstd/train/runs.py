"""The run cache: `outputs/runs/<run-id>/` holds one training run.

    .lock         held (flock) by the process training the run; holds its pid
    config.json   the TrainConfig, the run id and what it was hashed from
    last.pt       resume state (model, optimiser, scheduler, epoch/step, RNG states, log rows),
                  rewritten every `ckpt_every` steps and after every epoch
    best.pt       the selected model (best validation score), a self-describing checkpoint
    log.csv       one row per epoch (losses, learning rates, validation metrics, time)
    metrics.json  written last, when the run is complete: validation metrics of best.pt

run-id = readable prefix + 8 hex digits of the hash of everything that changes the result
(the config, the dataset's identity, the Stage-1 run a Stage-2 run starts from, and the
version of the code that trains and scores it: `code_version`), e.g.
`na_irstd-tiny-s1-soft-SIRST-quick-1a2b3c4d`. The dataset's identity is its resolved root and a
fingerprint of its files (names and contents of images and masks, contents of the split lists),
so a changed or different dataset folder never reuses a run trained on other files, while the
same bytes re-copied in place (new mtimes) keep their runs.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nairstd.data.index import DatasetIndex
from nairstd.io import write_json
from nairstd.paths import outputs_root
from nairstd.train.config import TrainConfig, config_hash


def runs_root(runs_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the runs: `runs_dir`, else `<outputs>/runs`."""
    return Path(runs_dir).expanduser().resolve() if runs_dir else outputs_root() / "runs"


class RunInProgress(RuntimeError):
    """Another process holds the run folder's lock."""


@functools.cache
def _file_sha256(path: str, stamp: tuple[int, int, int, int]) -> str:
    """sha256 of a file's bytes, cached per (path, inode, size, mtime, ctime) so a process reads
    each file once (ctime moves on every write and cannot be set back)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_fingerprint(index: DatasetIndex) -> str:
    """sha256 (16 hex) of the dataset's files: name and content hash of every image and mask
    file, and the bytes of the split lists (also the lists shipped with nairstd). Contents, not
    mtimes: a dataset copied again with the same bytes (a fresh checkout, a re-synced share)
    keeps its cached runs. SIRST (19 MB): 35 ms the first time in a process, 4.5 ms after."""
    from nairstd.data.index import _find_lists

    digest = hashlib.sha256()
    for folder in sorted({index.image_dir, index.mask_dir}):
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                st = entry.stat()
                stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                content = _file_sha256(entry.path, stamp)
                digest.update(f"{folder.name}/{entry.name}\0{content}\n".encode())
    lists, _ = _find_lists(index.root, index.layout, index.name)
    for split, path in sorted(lists.items()):
        digest.update(f"list {split}\n".encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def dataset_identity(index: DatasetIndex) -> dict[str, Any]:
    """What names a dataset for the cache: its name, split sizes, resolved root folder and a
    fingerprint of its files (see dataset_fingerprint)."""
    return {
        "name": index.name,
        "train": len(index.split("train")),
        "val": len(index.split("val")),
        "root": str(Path(index.root).resolve()),
        "files": dataset_fingerprint(index),
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


# The package code whose change can change a trained model or its scores: a run (or a cached
# evaluation) made by other code is not reused. The rest (reports, CLI, plots) is left out.
CODE_PARTS = ("models", "baselines", "train", "data", "losses.py", "metrics.py", "protocols.py")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """16 hex digits of the hash of the training and scoring code (CODE_PARTS: file names
    and contents), computed once per process (about 10 ms)."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for part in CODE_PARTS:
        path = package / part
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            digest.update(str(f.relative_to(package)).encode() + b"\0")
            digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def run_key(config: TrainConfig, index: DatasetIndex) -> dict[str, Any]:
    key = config.hashed_fields()
    key["dataset"] = dataset_identity(index)
    key["init_from"] = init_identity(config.init_from)
    key["code"] = code_version()
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


def write_run_config(folder: Path, config: TrainConfig, index: DatasetIndex) -> None:
    """Write the run's config.json (once); a folder another config owns is a RuntimeError."""
    path = folder / "config.json"
    info = {
        "run_id": folder.name,
        "config": config.to_dict(),
        "key": run_key(config, index),
        "dataset": {**dataset_identity(index), "root": str(index.root)},
    }
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("key") != info["key"]:
            raise RuntimeError(f"{path}: another config owns this run folder (hash clash)")
        return
    write_json(path, info)


def sweep_temp_files(folder: Path) -> list[Path]:
    """Remove the temporary files an interrupted atomic write left (e.g. `.last.pt.k3j2.pt`).
    Only called by the lock holder, so no live write is touched."""
    removed = []
    for path in folder.glob(".*"):
        if path.name != ".lock" and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextmanager
def run_lock(folder: str | os.PathLike, enabled: bool = True) -> Iterator[list[Path]]:
    """Hold the run folder's lock for the block (an flock, released by the OS even on kill -9),
    after sweeping orphan temporary files; yields the swept files. A second process gets
    RunInProgress naming the holder's pid. enabled=False (non-main torchrun ranks): no-op."""
    if not enabled:
        yield []
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise RunInProgress(
                f"{folder}: this run is in progress (pid {pid}); wait for it to finish, then "
                "run the same command again to reuse it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield sweep_temp_files(folder)
    finally:
        os.close(fd)  # releases the lock


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
