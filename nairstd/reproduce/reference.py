"""The reference budget of claims C1-C5 (issue 21): runs that outlive a session, as evidence.

`python -m nairstd reference run` trains every arm of the chosen claims on the `reference`
profile's budget (3200 optimiser steps on whole 256x256 images at batch 8, two-stage 800 + 2400,
seeds 0-2), plus one seed of each arm at twice the budget (the convergence check), in parallel
worker processes. Each finished unit (dataset, arm, seed, budget) writes a small result bundle
into `results/reference/<dataset>/<arm>/<seed>[-x2]/`, meant to be committed:

  bundle.json     the planned configs, run ids, code commit, machine, wall time, best val IoU
  log.csv         the final stage's validation curve (with gamma_l); log_stage1.csv for Stage 1
  test_<set>.json test metrics and per-image counts (named), resize256, on every test set
                  (Stage-1 arms: Top-K coverage at the default K, and at K = 16: *_K16.json)

No checkpoint goes into a bundle. A bundle is written whole into a temporary folder and renamed
into place, so a folder that exists is complete. `reference run` skips units whose bundle exists
and is not stale; an interrupted unit resumes through the run cache (outputs/runs/).

A bundle is stale when its configs differ from what the current code plans for that unit
(`stale_fields`): the report marks it and the verdicts leave it out.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nairstd.baselines import DEEP_BASELINES
from nairstd.paths import git_commit, project_root
from nairstd.profiles import Budget, get_profile

PROFILE = "reference"
# Each claim: its arms and the training sets it is tested on (issue 21: C1 and C4 also on
# synthetic-nudt). Stage-1 arms (C4) are the Stage 1 of a two-stage run: 800 of the 3200 steps.
CLAIM_ARMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "C1": (("detector", "detector_ds2"), ("SIRST", "synthetic-nudt")),
    "C4": (("stage1_soft", "stage1_hard"), ("SIRST", "synthetic-nudt")),
    "C2": (("detector", "dense_cnn", "two_stage_soft"), ("SIRST",)),
    "C3": (("one_stage_hard", "one_stage_soft", "two_stage_hard", "two_stage_soft"), ("SIRST",)),
    # C5 (Table III): Na-IRSTD against every deep baseline, each on the same reference budget.
    "C5": (("two_stage_soft", *DEEP_BASELINES), ("SIRST",)),
}
SATURATION_K = 16  # C4's "near saturation" reference K (as nairstd.reproduce.stage1)
STILL_IMPROVING_IOU = 1.0  # a doubled run gaining more val IoU than this: "still improving"


def results_root() -> Path:
    """results/reference/ in the checkout (NAIRSTD_RESULTS overrides, e.g. for tests)."""
    env = os.environ.get("NAIRSTD_RESULTS")
    return Path(env) if env else project_root() / "results" / "reference"


@dataclass(frozen=True)
class Unit:
    """One bundle: an arm trained on a dataset with one seed, at the reference budget x scale."""

    dataset: str
    arm: str
    seed: int
    scale: int = 1  # 2: the convergence check at twice the budget

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.arm}/seed{self.seed}" + ("-x2" if self.scale > 1 else "")

    def budget(self) -> Budget:
        base = get_profile(PROFILE).claims
        return dataclasses.replace(base, steps=base.total * self.scale)

    def configs(self, device: str | None = None) -> list:
        """The unit's TrainConfigs in training order (nairstd.reproduce.arms.arm_configs)."""
        from nairstd.reproduce.arms import arm_configs

        extra = {"device": device} if device else {}
        return arm_configs(
            PROFILE, self.arm, self.dataset, self.seed, budget=self.budget(), **extra
        )

    def folder(self, root: Path | None = None) -> Path:
        return (root or results_root()) / self.name


def plan_units(
    claims: Iterable[str] = tuple(CLAIM_ARMS),
    seeds: Iterable[int] | None = None,
    doubled: bool = True,
    datasets: Iterable[str] | None = None,
) -> list[Unit]:
    """Every unit of `claims`, in the order they are worth running: per training set (SIRST
    first), each claim (in the order given) with every seed of its arms; then one seed (the
    first) of each arm at twice the budget, in the same order. Units shared by claims (C2 and C3
    share two_stage_soft) appear once. The deep baselines' units (C5; 2-10x the CPU time of a
    Na-IRSTD unit) come after every other unit, doubled runs included, so a plain `reference
    run` settles C1-C4's convergence before it spends days on C5."""
    seeds = tuple(get_profile(PROFILE).seeds if seeds is None else seeds)
    wanted = None if datasets is None else set(datasets)
    claims = list(claims)
    for claim in claims:
        if claim not in CLAIM_ARMS:
            raise ValueError(f"unknown claim {claim!r}; choose from {', '.join(CLAIM_ARMS)}")
    all_sets = dict.fromkeys(d for c in claims for d in CLAIM_ARMS[c][1])
    units: dict[Unit, None] = {}
    for scale, seed_list in ((1, seeds), (2, seeds[:1] if doubled else ())):
        for dataset in all_sets:
            if wanted is not None and dataset not in wanted:
                continue
            for claim in claims:
                arms, sets = CLAIM_ARMS[claim]
                if dataset not in sets:
                    continue
                for seed in seed_list:
                    for arm in arms:
                        units[Unit(dataset, arm, seed, scale)] = None
    cheap = [u for u in units if u.arm not in DEEP_BASELINES]
    return cheap + [u for u in units if u.arm in DEEP_BASELINES]


# --------------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    """The machine a bundle ran on: CPU model, cores, torch, GPU (verdicts that flip between
    machines must be traceable)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def _comparable(config_dict: dict[str, Any]) -> dict[str, Any]:
    """A config's fields that decide what is trained (not hashed: device, threads, ...; and the
    Stage-1 run path a Stage 2 resolves at run time)."""
    from nairstd.train.config import HASHED_WHEN_SET, NOT_HASHED

    return {
        k: v
        for k, v in config_dict.items()
        if k not in NOT_HASHED
        and k != "init_from"
        # A field added after a bundle was made counts only when set, as in run ids.
        and not (k in HASHED_WHEN_SET and v == HASHED_WHEN_SET[k])
    }


def stale_fields(bundle: dict[str, Any]) -> list[str]:
    """Fields where the bundle's configs differ from what the current code plans for its unit
    (empty: current). A different number of stages counts as 'stages'."""
    unit = Unit(**bundle["unit"])
    try:
        now = [_comparable(c.to_dict()) for c in unit.configs()]
    except (KeyError, ValueError) as err:  # the arm or its settings no longer exist
        return [f"unplannable ({err})"]
    then = [_comparable(c) for c in bundle["configs"]]
    if len(now) != len(then):
        return ["stages"]
    diff = []
    for a, b in zip(then, now):
        diff += [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k not in diff]
    return diff


# --------------------------------------------------------------------------------------------------
# Training a unit and writing its bundle
# --------------------------------------------------------------------------------------------------
def best_val(log_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The best validation value of a run's log: IoU, or Top-K coverage for a Stage-1 run (which
    has no segmentation output)."""
    for metric in ("val_IoU", "val_coverage"):
        values = [r.get(metric) for r in log_rows]
        values = [float(v) for v in values if v is not None and v == v]  # drop NaN
        if values:
            return {"metric": metric[4:], "best": max(values)}
    return {"metric": None, "best": None}


def run_unit(
    unit: Unit,
    root: str | None = None,
    data_root: str | None = None,
    runs_dir: str | None = None,
    device: str | None = None,
    commit: str | None = None,
) -> str:
    """Worker: train (or resume) every stage of `unit`, evaluate it on its test sets, write its
    bundle atomically. Returns one line saying what happened. `commit`: the code the worker
    runs, taken when the runs were launched (HEAD may move while a unit trains)."""
    import warnings

    import pandas as pd

    from nairstd.data.index import find_dataset
    from nairstd.io import write_json, write_text
    from nairstd.protocols import RESIZE256
    from nairstd.reproduce.arms import test_sets
    from nairstd.reproduce.common import cached_eval
    from nairstd.train import train

    warnings.filterwarnings("ignore", category=UserWarning)
    folder = unit.folder(Path(root) if root else None)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    from nairstd.train.runs import code_version

    commit, machine = commit or git_commit(), machine_info()
    configs = unit.configs(device)
    runs, stage_times = [], []
    for config in configs:
        t0 = time.perf_counter()
        run = train(config, runs_dir=runs_dir, data_root=data_root, progress=False, log=_quiet)
        runs.append(run)
        stage_times.append(
            run.metrics.get("train_time_s") if run.reused else time.perf_counter() - t0
        )
    final = runs[-1]
    stage1_only = final.config.stage == "1"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=_ensure(folder.parent)))
    try:
        evals = {}
        for index in test_sets(unit.dataset, data_root):
            ks: list[int | None] = [None, SATURATION_K] if stage1_only else [None]
            for k in ks:
                result = cached_eval(final, index, "test", RESIZE256, PROFILE, k, stage1_only)
                name = f"test_{index.name}" + (f"_K{k}" if k else "")
                write_json(tmp / f"{name}.json", result)
                evals[name] = {m: result.get(m) for m in _SUMMARY if m in result}
        for i, run in enumerate(runs):
            log = run.run_dir / "log.csv"
            if log.is_file():
                target = "log.csv" if i == len(runs) - 1 else f"log_stage{run.config.stage}.csv"
                write_text(tmp / target, log.read_text())
        logs = [pd.read_csv(r.run_dir / "log.csv").to_dict("records") for r in runs]
        bundle = {
            "unit": dataclasses.asdict(unit),
            "profile": PROFILE,
            "budget": unit.budget().describe(),
            "steps": [c.max_steps for c in configs],
            "configs": [c.to_dict() for c in configs],
            "run_ids": [r.run_id for r in runs],
            "commit": commit,
            "code_version": code_version(),  # hash of the training and scoring code
            "machine": machine,
            "threads": configs[-1].threads,
            "dataset": {"name": find_dataset(unit.dataset, data_root).name},
            "train_time_s": stage_times,
            "best_val": [best_val(rows) for rows in logs],
            "test": evals,
            "started": started,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_json(tmp / "bundle.json", bundle)
        if folder.exists():  # a stale bundle of the same unit: replaced by the new one
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    took = sum(t or 0 for t in stage_times)
    return f"{unit.name}: bundle written ({took / 60:.1f} min of training) -> {folder}"


_SUMMARY = ("IoU", "nIoU", "Pd", "Fa", "coverage", "precision", "n_images")


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _quiet(_line: str) -> None:
    """Workers print nothing per epoch; log.csv has it."""


def load_bundle(folder: Path) -> dict[str, Any]:
    bundle = json.loads((folder / "bundle.json").read_text())
    bundle["folder"] = str(folder)
    return bundle


def load_bundles(root: Path | None = None) -> list[dict[str, Any]]:
    """Every complete bundle under `root` (temporary folders of unfinished writes skipped)."""
    root = root or results_root()
    if not root.is_dir():
        return []
    return [
        load_bundle(p.parent)
        for p in sorted(root.glob("*/*/*/bundle.json"))
        if not p.parent.name.startswith(".tmp-")
    ]


def bundle_test(bundle: dict[str, Any], test_set: str, k: int | None = None) -> dict[str, Any]:
    """A bundle's test result on one test set (with per-image counts)."""
    name = f"test_{test_set}" + (f"_K{k}" if k else "")
    return json.loads((Path(bundle["folder"]) / f"{name}.json").read_text())


def pending(units: list[Unit], root: Path | None = None) -> list[Unit]:
    """Units without a current bundle (missing or stale)."""
    todo = []
    for unit in units:
        folder = unit.folder(root)
        if not (folder / "bundle.json").is_file() or stale_fields(load_bundle(folder)):
            todo.append(unit)
    return todo


def run_reference(
    claims: Iterable[str] = tuple(CLAIM_ARMS),
    workers: int = 2,
    device: str | None = None,
    seeds: Iterable[int] | None = None,
    doubled: bool = True,
    datasets: Iterable[str] | None = None,
    root: str | None = None,
    data_root: str | None = None,
    runs_dir: str | None = None,
    limit: int | None = None,
) -> list[str]:
    """Train every pending unit (at most `limit`) with `workers` processes (one thread each on
    CPU), writing a bundle as each finishes. Returns the lines printed."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    root_path = Path(root) if root else None
    units = plan_units(claims, seeds, doubled, datasets)
    _prepare_data(units, data_root)
    todo = pending(units, root_path)[:limit]
    commit = git_commit()  # the code the workers load now, whatever HEAD is when a unit starts
    lines = [f"[reference: {len(units)} unit(s) planned, {len(todo)} to run]"]
    print(lines[0], flush=True)
    if not todo:
        return lines
    # One argument tuple for both paths: the workers record the launch commit, not HEAD at the
    # time a unit starts (the bundles of the first reference launch recorded the latter).
    unit_args = (root, data_root, runs_dir, device, commit)
    if workers <= 1:
        for unit in todo:
            lines.append(run_unit(unit, *unit_args))
            print(lines[-1], flush=True)
        return lines
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(min(workers, len(todo)), mp_context=context)
    try:
        with _terminate_as_interrupt():
            futures = {pool.submit(run_unit, u, *unit_args): u for u in todo}
            for future in as_completed(futures):
                try:
                    lines.append(future.result())
                except Exception as err:  # one failed unit does not stop the others
                    lines.append(f"{futures[future].name}: FAILED: {type(err).__name__}: {err}")
                print(lines[-1], flush=True)
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM: stop the workers too (they would train on, orphaned); their runs
        # resume from the run cache at the next `reference run`.
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return lines


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the main thread while the pool runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _prepare_data(units: list[Unit], data_root: str | None) -> None:
    """Generate the synthetic sets and IRSTD-Hard the units need, when absent (as notebook 01)."""
    from nairstd.data.images import DataError
    from nairstd.data.index import find_dataset
    from nairstd.reproduce.data_prep import prepare_datasets

    names = sorted({u.dataset for u in units})
    try:
        for name in names:
            find_dataset(name, data_root)
        if "SIRST" in names:
            find_dataset("IRSTD-Hard", data_root)
    except DataError:
        prepare_datasets(PROFILE, data_root=data_root)
