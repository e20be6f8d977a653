"""Steps shared by the reproduction notebooks: pick datasets, train-or-reuse, cached evaluation.

Evaluations are cached beside the run they evaluate (`<run>/evals/*.json`, keyed by the test
dataset's identity, split, protocol and K), so notebooks 05-07 reuse what 02-04 measured.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from nairstd.data.images import DataError
from nairstd.data.index import DatasetIndex, find_dataset
from nairstd.io import write_json
from nairstd.train import RunResult, evaluate_model, profile_config, train
from nairstd.train.config import config_hash, cpu_threads, profile_threads
from nairstd.train.runs import dataset_identity

# Comparison runs (Tables I, III, IV, V) share one smaller budget in `quick`, so that the whole
# pipeline fits 90 minutes on a 2-core CPU; notebooks 03/04 keep the profile's full schedule.
COMPARISON_BUDGET = {"smoke": {}, "quick": {"epochs": 20, "crop_size": 128}, "paper": {}}

# Test images per profile: smoke scores a few images only (plumbing), the others the whole split.
EVAL_LIMIT = {"smoke": 6, "quick": None, "paper": None}


# Where a missing dataset comes from: generated ones name their notebook, real ones their folder.
MADE_BY = {
    "synthetic": "notebook 01 (01_data_prep) generates it",
    "synthetic-nudt": "notebook 01 (01_data_prep) generates it",
    "synthetic-tiny": "notebook 01 (01_data_prep) generates it",
    "irstd-hard": "notebook 01 (01_data_prep) builds it from the test splits at hand",
}


def missing_sentence(name: str) -> str:
    """One plain sentence for a dataset that is not found, saying where it comes from."""
    source = MADE_BY.get(name.lower(), "put its folder in data/ or point NAIRSTD_DATA at it")
    return f"Dataset {name} not found, so it is left out: {source}."


def available(names: list[str], data_root: str | None = None) -> list[DatasetIndex]:
    """The datasets of `names` that are found; each missing one is skipped with one printed
    sentence (a plain line in a notebook, not a warning box) saying where it comes from."""
    found = []
    for name in names:
        try:
            found.append(find_dataset(name, data_root))
        except DataError:
            print(missing_sentence(name), flush=True)
    return found


def training_set(preferred: str = "SIRST", data_root: str | None = None) -> str:
    """The dataset models are trained on: `preferred` when present, else the synthetic set."""
    for name in (preferred, "synthetic"):
        try:
            return find_dataset(name, data_root).name
        except DataError:
            continue
    raise DataError("neither SIRST nor the synthetic dataset found: run notebook 01 first")


def budgeted(profile: str, fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` over the profile's COMPARISON_BUDGET (explicit fields win)."""
    return {**COMPARISON_BUDGET[profile], **fields}


def train_run(
    profile: str, model: str, dataset: str, stage: str = "one", **fields: Any
) -> RunResult:
    """Train (or reuse) one comparison run of `model`: the profile's settings for `stage` under
    the profile's COMPARISON_BUDGET (explicit `fields` still win)."""
    fields = budgeted(profile, fields)
    config = profile_config(profile, stage, model=model, dataset=dataset, **fields)
    start = time.perf_counter()
    run = train(config)
    state = "reused" if run.reused else f"trained in {time.perf_counter() - start:.0f} s"
    print(f"{model} ({stage}, {dataset}): {state} -> {run.run_id}")
    return run


def cached_eval(
    run: RunResult,
    dataset: DatasetIndex,
    split: str = "test",
    protocol: str = "resize256",
    profile: str = "quick",
    top_k: int | None = None,
) -> dict[str, Any]:
    """SPEC §6 metrics of a run's best checkpoint on a split; cached in the run folder."""
    key = {
        "dataset": dataset_identity(dataset),
        "split": split,
        "protocol": protocol,
        "limit": EVAL_LIMIT[profile],
        "top_k": top_k,
    }
    cache = run.run_dir / "evals" / f"{dataset.name}_{split}_{protocol}_{config_hash(key)}.json"
    if cache.is_file():
        return json.loads(cache.read_text())["result"]
    model = run.load_model()
    if top_k is not None:
        model.top_k = top_k
    with cpu_threads(profile_threads(profile)):
        result = evaluate_model(
            model, dataset, split, protocol, limit=EVAL_LIMIT[profile], device="auto"
        )
    write_json(cache, {"key": key, "result": result})
    return result


def output_dirs(output_dir: str | None = None) -> tuple[Path, Path]:
    """(tables, figures) folders under the outputs root."""
    from nairstd.paths import outputs_root

    out = Path(output_dir) if output_dir else outputs_root()
    return out / "tables", out / "figures"
