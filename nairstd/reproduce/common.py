"""Steps shared by the reproduction notebooks: pick datasets, train-or-reuse, cached evaluation.

Evaluations are cached beside the run they evaluate (`<run>/evals/*.json`, keyed by the test
dataset's identity, split, protocol and K), so notebooks 05-07 reuse what 02-04 measured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nairstd.data.images import DataError
from nairstd.data.index import DatasetIndex, find_dataset
from nairstd.io import write_json
from nairstd.profiles import DEFAULT_PROFILE, Budget, get_profile
from nairstd.protocols import RESIZE256
from nairstd.train import RunResult, evaluate_model, profile_config
from nairstd.train.config import TrainConfig, config_hash, cpu_threads, profile_threads
from nairstd.train.runs import code_version, dataset_identity

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


def budget_fields(
    profile: str, stage: str, table: str = "claims", budget: Budget | None = None
) -> dict[str, Any]:
    """TrainConfig fields of the profile's budget for a table ("claims": Tables I, IV, V and
    Fig. 7; "main": Table III) and a stage (nairstd.profiles.Budget); `budget` replaces the
    table's (e.g. the reference runs' doubled budget)."""
    p = get_profile(profile)
    if budget is None:
        budget = p.claims if table == "claims" else p.main
    return budget.fields(stage)


def budget_config(
    profile: str, stage: str, table: str = "claims", budget: Budget | None = None, **fields: Any
) -> TrainConfig:
    """A run of a comparison: the profile's settings for `stage` on the table's budget (or
    `budget`); explicit `fields` (model, dataset, seed, label, ...) win."""
    return profile_config(
        profile, stage, **{**budget_fields(profile, stage, table, budget), **fields}
    )


def eval_cache(
    run_dir: Path,
    dataset: DatasetIndex,
    split: str,
    protocol: str,
    profile: str,
    top_k: int | None = None,
    scores_only: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """(file, key) of one cached evaluation in a run folder."""
    key = {
        "dataset": dataset_identity(dataset),
        "split": split,
        "protocol": protocol,
        "limit": get_profile(profile).eval_limit,
        "top_k": top_k,
        "scores_only": scores_only,
        "code": code_version(),  # a cached score made by other training/scoring code is stale
    }
    return run_dir / "evals" / f"{dataset.name}_{split}_{protocol}_{config_hash(key)}.json", key


def cached_eval(
    run: RunResult,
    dataset: DatasetIndex,
    split: str = "test",
    protocol: str = RESIZE256,
    profile: str = DEFAULT_PROFILE,
    top_k: int | None = None,
    scores_only: bool = False,
) -> dict[str, Any]:
    """SPEC §6 metrics of a run's best checkpoint on a split; cached in the run folder.
    scores_only: Top-K coverage of the scorer alone (Stage-1 runs). The result holds the
    per-image counts too (`per_image`), for the claim intervals."""
    limit = get_profile(profile).eval_limit
    cache, key = eval_cache(run.run_dir, dataset, split, protocol, profile, top_k, scores_only)
    if cache.is_file():
        return json.loads(cache.read_text())["result"]
    model = run.load_model()
    if top_k is not None:
        model.top_k = top_k
    with cpu_threads(profile_threads(profile)):
        result = evaluate_model(
            model, dataset, split, protocol, limit=limit, device="auto", scores_only=scores_only
        )
    write_json(cache, {"key": key, "result": result})
    return result


def output_dirs(output_dir: str | None = None) -> tuple[Path, Path]:
    """(tables, figures) folders under the outputs root."""
    from nairstd.paths import outputs_root

    out = Path(output_dir) if output_dir else outputs_root()
    return out / "tables", out / "figures"
