"""The arms of the claim tables (I, IV, V, Fig. 7), trained for every seed on one budget.

An arm is one way of training a model ("detector", "two_stage_soft", ...). Every arm of a claim
table gets the profile's `claims` budget (nairstd.profiles.Budget): the same number of optimiser
steps on whole 256x256 images at batch 8, a two-stage arm splitting it between Stage 1 and
Stage 2. `train_arms` plans every (training set, arm, seed) run, trains the missing ones in
parallel worker processes and caches their test evaluations; `measured_rows` reads them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from nairstd.baselines import BASELINE_INFO, DEEP_BASELINES
from nairstd.data.hard import HARD_NAME
from nairstd.data.images import DataError
from nairstd.data.index import DatasetIndex, find_dataset
from nairstd.profiles import Budget, get_profile
from nairstd.protocols import RESIZE256
from nairstd.reproduce.common import budget_config, cached_eval, missing_sentence
from nairstd.reproduce.parallel import EvalSpec, Job, job, run_jobs
from nairstd.tables import canonical
from nairstd.train import RunResult, stage1_config_for, train
from nairstd.train.config import TrainConfig


@dataclass(frozen=True)
class Arm:
    model: str
    stage: str  # "one", "1" (the scorer alone) or "2" (Stage 1 then Stage 2)
    label: str | None = None  # patch labels of L_score (native-branch models)
    title: str = ""


ARMS = {
    "detector": Arm("detector", "one", title="detector, native input (one-stage, L_seg)"),
    "detector_ds2": Arm("detector_ds2", "one", title="detector, 2x downsampled input"),
    "dense_cnn": Arm("dense_cnn", "2", "soft", "dense CNN branch, two-stage soft"),
    "two_stage_soft": Arm("na_irstd", "2", "soft", "Na-IRSTD two-stage, soft labels"),
    "two_stage_hard": Arm("na_irstd", "2", "hard", "Na-IRSTD two-stage, hard labels"),
    "one_stage_soft": Arm("na_irstd", "one", "soft", "Na-IRSTD one-stage, soft labels"),
    "one_stage_hard": Arm("na_irstd", "one", "hard", "Na-IRSTD one-stage, hard labels"),
    "stage1_soft": Arm("na_irstd", "1", "soft", "Stage 1 (scorer), soft labels"),
    "stage1_hard": Arm("na_irstd", "1", "hard", "Stage 1 (scorer), hard labels"),
    # C5's opponents (Table III): each deep baseline, one-stage with its own paper's loss and
    # optimiser (nairstd.train.recipes, applied by the loop from the model name).
    **{
        name: Arm(name, "one", title=f"{BASELINE_INFO[name]['table_name']}, its paper's recipe")
        for name in DEEP_BASELINES
    },
}


@dataclass
class Trained:
    """A trained model and every run that made it (Stage 1 then Stage 2, or one run)."""

    name: str
    runs: list[RunResult] = field(default_factory=list)

    @property
    def final(self) -> RunResult:
        return self.runs[-1]

    @property
    def train_time_s(self) -> float | None:
        """Training wall time of all its stages (None when a run did not record it)."""
        times = [r.metrics.get("train_time_s") for r in self.runs]
        return None if any(t is None for t in times) else float(sum(times))

    @property
    def run_ids(self) -> str:
        return " + ".join(r.run_id for r in self.runs)


def arm_configs(
    profile: str,
    arm: str,
    dataset: str,
    seed: int,
    table: str = "claims",
    budget: Budget | None = None,
    **fields: Any,
) -> list[TrainConfig]:
    """The configs of one arm in training order (two-stage: Stage 1, then Stage 2); `budget`
    replaces the table's budget."""
    a = ARMS[arm]
    label = {"label": a.label} if a.label else {}
    config = budget_config(
        profile,
        a.stage,
        table,
        budget,
        model=a.model,
        dataset=dataset,
        seed=seed,
        **label,
        **fields,
    )
    return [stage1_config_for(config), config] if a.stage == "2" else [config]


def claim_sets(profile: str, data_root: str | None = None, which: str = "claim_sets") -> list[str]:
    """The training sets of the claim tables that are found (SIRST falls back to the synthetic
    set when absent). Missing ones are named once. which: "claim_sets" (Table I, Fig. 7) or
    "ablation_sets" (notebook 04, Tables IV and V)."""
    names = []
    for name in getattr(get_profile(profile), which):
        for candidate in (name, "synthetic") if name == "SIRST" else (name,):
            try:
                names.append(find_dataset(candidate, data_root).name)
                break
            except DataError:
                continue
        else:
            print(missing_sentence(name))
    return list(dict.fromkeys(names))


def test_sets(dataset: str, data_root: str | None = None) -> list[DatasetIndex]:
    """Where a model trained on `dataset` is scored: its own test split, and IRSTD-Hard (built
    by notebook 01 from small-target test images) for SIRST-trained models."""
    sets = [find_dataset(dataset, data_root)]
    if canonical(dataset) == "sirst":
        try:
            sets.append(find_dataset(HARD_NAME, data_root))
        except DataError:
            print(missing_sentence(HARD_NAME))
    return sets


def plan(
    profile: str,
    arms: list[str],
    datasets: list[str],
    seeds: tuple[int, ...] | None = None,
    data_root: str | None = None,
    extra_evals: dict[str, list[EvalSpec]] | None = None,
    **fields: Any,
) -> list[Job]:
    """Jobs for every (dataset, arm, seed): each stage's run, the final run scored on the test
    sets (Stage-1 arms: coverage of the scorer alone). extra_evals: more per arm."""
    seeds = get_profile(profile).seeds if seeds is None else seeds
    jobs = []
    for dataset in datasets:
        sets = [i.name for i in test_sets(dataset, data_root)]
        for arm in arms:
            scores_only = ARMS[arm].stage == "1"
            evals = [EvalSpec(s, scores_only=scores_only) for s in sets]
            evals += (extra_evals or {}).get(arm, [])
            for seed in seeds:
                configs = arm_configs(profile, arm, dataset, seed, **fields)
                jobs += [job(c) for c in configs[:-1]]
                jobs.append(job(configs[-1], evals))
    return jobs


def train_arms(
    profile: str,
    arms: list[str],
    datasets: list[str],
    seeds: tuple[int, ...] | None = None,
    data_root: str | None = None,
    extra_evals: dict[str, list[EvalSpec]] | None = None,
    **fields: Any,
) -> dict[tuple[str, str, int], Trained]:
    """Train (in parallel, or reuse) every arm on every dataset for every seed; returns
    {(dataset, arm, seed): Trained}."""
    p = get_profile(profile)
    seeds = p.seeds if seeds is None else seeds
    fields = {k: v for k, v in fields.items() if v is not None}
    jobs = plan(profile, arms, datasets, seeds, data_root, extra_evals, **fields)
    run_jobs(jobs, profile, p.workers, data_root)
    out = {}
    for dataset in datasets:
        for arm in arms:
            for seed in seeds:
                # The very configs `plan` trained (with `fields`: a base-size run is read back
                # as a base-size run, not as the profile's default size).
                runs = [
                    train(c, data_root=data_root, log=_quiet)
                    for c in arm_configs(profile, arm, dataset, seed, **fields)
                ]
                out[(dataset, arm, seed)] = Trained(ARMS[arm].title or arm, runs)
    return out


def _quiet(_line: str) -> None:
    """Cache hits print nothing (run_jobs already said what it trained)."""


def measure(
    trained: Trained, index: DatasetIndex, profile: str, top_k: int | None = None
) -> dict[str, Any]:
    """Test metrics (resize256) of a trained arm, from / into the run's eval cache."""
    scores_only = trained.final.config.stage == "1"
    return cached_eval(trained.final, index, "test", RESIZE256, profile, top_k, scores_only)


def measured_rows(
    trained: dict[tuple[str, str, int], Trained],
    profile: str,
    metrics: list[str],
    data_root: str | None = None,
) -> pd.DataFrame:
    """One row per (training set, test set, arm, seed) with `metrics` and the run ids."""
    rows = []
    for (dataset, arm, seed), t in trained.items():
        for index in test_sets(dataset, data_root):
            r = measure(t, index, profile)
            rows.append(
                {
                    "source": f"measured ({profile})",
                    "trained_on": dataset,
                    "dataset": index.name,
                    "arm": arm,
                    "seed": seed,
                    **{m: r.get(m) for m in metrics},
                    "train_time_min": None if t.train_time_s is None else t.train_time_s / 60,
                    "run_ids": t.run_ids,
                }
            )
    return pd.DataFrame(rows)


def per_image(
    trained: dict[tuple[str, str, int], Trained],
    dataset: str,
    arm: str,
    index: DatasetIndex,
    profile: str,
    top_k: int | None = None,
) -> list[dict[str, list[float]]]:
    """Per-image counts of an arm on a test set, one dict per seed (seed order)."""
    seeds = sorted(s for d, a, s in trained if d == dataset and a == arm)
    return [measure(trained[(dataset, arm, s)], index, profile, top_k)["per_image"] for s in seeds]
