"""Train independent runs in worker processes, one torch thread each (issue: use both cores).

A notebook plans every run it needs (all seeds, all datasets) as `Job`s and hands them to
`run_jobs`, which trains what the run cache does not hold yet and evaluates each finished run on
its test sets (into the run's eval cache). The notebook's own code then calls `train` and
`cached_eval` as before: both return at once from the cache. The cache, its keys and resume are
unchanged: a worker calls the same `train(config)` a notebook would.

Stage 2 runs start from a Stage-1 run, so the jobs run in two waves: first every Stage-1 and
one-stage run, then every Stage-2 run. Within a wave the longest runs start first.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from nairstd.protocols import RESIZE256
from nairstd.train.config import TrainConfig

# Relative cost of one optimiser step (tiny size, 256x256, batch 8, one thread), measured with
# `python -m nairstd bench model`: orders the queue so the longest runs start first.
STEP_COST = {
    "detector_ds2": 0.3,
    "detector": 1.0,
    "acm": 1.5,
    "na_irstd": 2.0,
    "dense_cnn": 2.0,
    "agpcnet": 6.0,
    "uiunet": 7.0,
    "isnet": 8.0,
    "dnanet": 19.0,
    "rpcanet": 22.0,
}


@dataclass(frozen=True)
class EvalSpec:
    """One cached evaluation (reproduce.common.cached_eval) of a run's best checkpoint."""

    dataset: str
    split: str = "test"
    protocol: str = RESIZE256
    top_k: int | None = None
    scores_only: bool = False


@dataclass
class Job:
    """One run to train (or find in the cache) and the evaluations to cache after it."""

    config: TrainConfig
    evals: list[EvalSpec] = field(default_factory=list)
    label: str = ""  # what the progress line calls it

    def cost(self) -> float:
        steps = self.config.max_steps or self.config.epochs * 32
        stage = 0.4 if self.config.stage == "1" else 1.0  # Stage 1: no detector
        return STEP_COST.get(self.config.model, 2.0) * steps * stage


def _key(config: TrainConfig) -> str:
    import json

    return json.dumps(config.to_dict(), sort_keys=True, default=str)


def _run_job(
    job: Job, profile: str, data_root: str | None, runs_dir: str | None
) -> tuple[str, str]:
    """Worker: train (or reuse) one run, then cache its evaluations. Returns (label, line)."""
    import warnings

    from nairstd.data.index import find_dataset
    from nairstd.reproduce.common import cached_eval
    from nairstd.train import train

    warnings.filterwarnings("ignore", category=UserWarning)
    start = time.perf_counter()
    run = train(job.config, runs_dir=runs_dir, data_root=data_root, progress=False, log=_quiet)
    took = time.perf_counter() - start
    state = "reused" if run.reused else f"trained in {took:.0f} s"
    for spec in job.evals:
        index = find_dataset(spec.dataset, data_root)
        cached_eval(run, index, spec.split, spec.protocol, profile, spec.top_k, spec.scores_only)
    return job.label, f"{job.label}: {state} -> {run.run_id}"


def _quiet(_line: str) -> None:
    """Workers print nothing per epoch (their stdout is not the notebook's); log.csv has it."""


def merge_jobs(jobs: Iterable[Job]) -> list[Job]:
    """One job per distinct config (evaluations merged), in first-seen order."""
    merged: dict[str, Job] = {}
    for job in jobs:
        key = _key(job.config)
        if key in merged:
            have = merged[key].evals
            have.extend(e for e in job.evals if e not in have)
        else:
            merged[key] = Job(job.config, list(job.evals), job.label)
    return list(merged.values())


def run_jobs(
    jobs: Iterable[Job],
    profile: str,
    workers: int = 2,
    data_root: str | None = None,
    runs_dir: str | None = None,
) -> None:
    """Train every job's run (Stage 1 and one-stage runs, then Stage 2 runs) with `workers`
    processes, and cache its evaluations. Prints one line per job and each wave's wall time."""
    jobs = merge_jobs(jobs)
    first = [
        j for j in jobs if j.config.stage != "2" and not _done(j, profile, data_root, runs_dir)
    ]
    second = [j for j in jobs if j.config.stage == "2"]
    if first:
        _run_wave("stage 1 / one-stage", first, profile, workers, data_root, runs_dir)
    # Stage 2 run ids name their Stage-1 run, known once the first wave is done.
    second = [j for j in second if not _done(j, profile, data_root, runs_dir)]
    if second:
        _run_wave("stage 2", second, profile, workers, data_root, runs_dir)
    skipped = len(jobs) - len(first) - len(second)
    if skipped:
        print(f"[{skipped} run(s) found finished and evaluated in the run cache]", flush=True)


def _done(job: Job, profile: str, data_root: str | None, runs_dir: str | None) -> bool:
    """True when the job's run is finished and every evaluation it asks for is cached."""
    from nairstd.data.index import find_dataset
    from nairstd.reproduce.common import eval_cache
    from nairstd.train.loop import planned_run_dir
    from nairstd.train.runs import is_complete

    folder = planned_run_dir(job.config, runs_dir, data_root)
    if folder is None or not is_complete(folder):
        return False
    for spec in job.evals:
        index = find_dataset(spec.dataset, data_root)
        path, _ = eval_cache(
            folder, index, spec.split, spec.protocol, profile, spec.top_k, spec.scores_only
        )
        if not path.is_file():
            return False
    return True


def _run_wave(
    name: str,
    wave: list[Job],
    profile: str,
    workers: int,
    data_root: str | None,
    runs_dir: str | None,
) -> None:
    start = time.perf_counter()
    # Training configs set their own thread count: no one-thread initializer here.
    map_in_workers(
        _run_job,
        [(job, profile, data_root, runs_dir) for job in wave],
        workers,
        costs=[job.cost() for job in wave],
        labels=[job.label for job in wave],
        on_done=lambda _i, result: print(result[1], flush=True),
        one_thread=False,
    )
    print(
        f"[{name}: {len(wave)} run(s) with {max(1, min(workers, len(wave)))} worker(s) in "
        f"{time.perf_counter() - start:.0f} s]",
        flush=True,
    )


def _one_thread() -> None:
    """Worker initializer: one torch thread (the other core runs the other worker)."""
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)


def map_in_workers(
    fn: Callable[..., Any],
    tasks: Sequence[tuple],
    workers: int = 2,
    costs: Sequence[float] | None = None,
    labels: Sequence[str] | None = None,
    on_done: Callable[[int, Any], None] | None = None,
    one_thread: bool = True,
) -> list[Any]:
    """`[fn(*task) for task in tasks]`, computed in `workers` spawned processes (of one torch
    thread each unless `one_thread` is False), the costliest tasks (by `costs`) started first;
    results in task order, and `on_done(index, result)` called as each finishes.

    For independent runs and evaluations (a training run, a method on a test set, a model on the
    OOD sets) that would otherwise leave a core idle. `fn` and the tasks must pickle
    (module-level functions, models, arrays). With `workers` <= 1 or a single task, runs them
    here, costliest first. A failing task stops the rest and raises, naming it by its label.
    """
    labels = list(labels) if labels is not None else [str(i) for i in range(len(tasks))]
    order = sorted(range(len(tasks)), key=lambda i: -(costs[i] if costs else 0.0))
    results: list[Any] = [None] * len(tasks)

    def finish(i: int, result: Any) -> None:
        results[i] = result
        if on_done is not None:
            on_done(i, result)

    if workers <= 1 or len(tasks) <= 1:
        for i in order:
            finish(i, fn(*tasks[i]))
        return results
    # spawn: a fresh interpreter per worker (fork would copy the kernel's torch threads).
    context = multiprocessing.get_context("spawn")
    init = _one_thread if one_thread else None
    with ProcessPoolExecutor(
        min(workers, len(tasks)), mp_context=context, initializer=init
    ) as pool:
        futures = {pool.submit(fn, *tasks[i]): i for i in order}
        for future in as_completed(futures):
            i = futures[future]
            try:
                result = future.result()
            except Exception as err:
                for other in futures:
                    other.cancel()
                raise RuntimeError(f"{labels[i]} failed: {err}") from err
            finish(i, result)
    return results


def describe(config: TrainConfig) -> str:
    """A short name for progress lines: model, stage, labels, dataset, seed."""
    stage = {"1": "Stage 1", "2": "Stage 2", "one": "one-stage"}[config.stage]
    label = f" {config.label}" if config.model in ("na_irstd", "dense_cnn") else ""
    return f"{config.model} {stage}{label}, {config.dataset}, seed {config.seed}"


def job(config: TrainConfig, evals: Iterable[EvalSpec] = ()) -> Job:
    """A Job named after its config."""
    return Job(config, list(evals), describe(config))
