"""Training throughput through the real loop: `python -m nairstd reference throughput`.

Each measurement trains one arm for a few optimiser steps with `nairstd.train.train` (the data
pipeline, losses, optimiser, scheduler and checkpoints of a real run, at the reference profile's
settings: whole 256x256 images, batch 8) in a fresh process with one torch thread, and times the
steps after a warm-up from the loop's own step callback (the validation that ends the run is not
timed). Fresh processes matter: glibc's malloc settings are process-wide, so the A/B of malloc
tuning (`--malloc both`) runs each side in its own process, alternating, in one load window.

This decides how much evidence fits in a session (issue 21): images/s per thread x cores x
seconds = images of training.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import tempfile
import time
from typing import Any

# What is measured: reference-profile configs of each claim arm's stages and of each deep
# baseline (one-stage, its paper's loss). name -> (arm or model, stage index in the arm).
ARM_STAGES = {
    "detector": ("detector", 0),
    "detector_ds2": ("detector_ds2", 0),
    "na_irstd stage 1": ("two_stage_soft", 0),
    "na_irstd stage 2": ("two_stage_soft", 1),
    "na_irstd one-stage": ("one_stage_soft", 0),
    "dense_cnn stage 2": ("dense_cnn", 1),
}
BASELINES = ("acm", "dnanet", "isnet", "uiunet", "agpcnet", "rpcanet")


def bench_config(name: str, dataset: str):
    """The TrainConfig of one measured row (reference profile, seed 0)."""
    from nairstd.reproduce.arms import arm_configs
    from nairstd.reproduce.common import budget_config

    if name in ARM_STAGES:
        arm, stage = ARM_STAGES[name]
        return arm_configs("reference", arm, dataset, 0)[stage]
    return budget_config("reference", "one", "main", model=name, dataset=dataset, seed=0)


def _measure(name: str, dataset: str, steps: int, warmup: int, malloc: bool, data_root) -> dict:
    """Child process: train `steps` steps of `name` (a Stage 2 trains its Stage 1 of the same
    length first, untimed) and return images/s over the steps after `warmup`."""
    import os

    import torch

    from nairstd.malloc import tune_malloc
    from nairstd.train import train

    # The training loop tunes malloc itself; the variable turns that off for the "default" side.
    os.environ["NAIRSTD_MALLOC_TUNING"] = "1" if malloc else "0"
    tuned = tune_malloc()
    torch.set_num_threads(1)
    config = dataclasses.replace(
        bench_config(name, dataset),
        max_steps=steps,
        epochs=10_000,
        val_every=10_000,
        val_limit=2,  # the one validation that ends the run is not timed: keep it short
        threads=1,
    )
    if config.stage == "2":
        config = dataclasses.replace(config, stage1_max_steps=steps, stage1_epochs=10_000)
    stamps: list[tuple[int, float]] = []
    train(
        config,
        runs_dir=tempfile.mkdtemp(prefix="nairstd-bench-"),
        data_root=data_root,
        progress=False,
        log=lambda _line: None,
        on_step=lambda step: stamps.append((step, time.perf_counter())),
    )
    start = max(i for i, (s, _) in enumerate(stamps) if s == 1)  # the last run (Stage 2)
    own = stamps[start:]
    timed = own[warmup:]
    seconds = (timed[-1][1] - timed[0][1]) / (len(timed) - 1)
    return {
        "name": name,
        "model": config.model,
        "stage": config.stage,
        "malloc_tuned": tuned,
        "steps_timed": len(timed) - 1,
        "s_per_step": seconds,
        "img_s": config.batch_size / seconds,
    }


def bench_train(
    names: list[str],
    dataset: str = "SIRST",
    steps: int = 14,
    warmup: int = 4,
    malloc: str = "on",
    repeats: int = 1,
    data_root: str | None = None,
) -> list[dict[str, Any]]:
    """One row per (name, malloc setting, repeat), each from a fresh one-thread process; with
    malloc="both" the two settings alternate so they share the load window."""
    if steps - warmup < 2:
        raise ValueError("need at least 2 timed steps: steps - warmup >= 2")
    settings = {"on": [True], "off": [False], "both": [False, True]}[malloc]
    context = multiprocessing.get_context("spawn")
    rows = []
    for _ in range(repeats):
        for name in names:
            for tuned in settings:
                with context.Pool(1) as pool:
                    rows.append(
                        pool.apply(_measure, (name, dataset, steps, warmup, tuned, data_root))
                    )
                print(_line(rows[-1]), flush=True)
    return rows


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['name']:<20} malloc {'tuned  ' if r['malloc_tuned'] else 'default'} "
        f"{r['s_per_step'] * 1000:7.0f} ms/step  {r['img_s']:6.1f} img/s  "
        f"({r['steps_timed']} steps)"
    )


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per name, images/s (mean of repeats) per malloc setting, and the ratio."""
    import pandas as pd

    df = pd.DataFrame(rows)
    table = df.pivot_table(index="name", columns="malloc_tuned", values="img_s", aggfunc="mean")
    order = [n for n in dict.fromkeys(df["name"])]
    lines = ["| arm / model | img/s, glibc default | img/s, malloc tuned | tuned / default |"]
    lines.append("|---|---:|---:|---:|")
    for name in order:
        off = table.loc[name].get(False)
        on = table.loc[name].get(True)
        ratio = f"{on / off:.2f}x" if off and on and off == off and on == on else "—"
        lines.append(f"| {name} | {_num(off)} | {_num(on)} | {ratio} |")
    return "\n".join(lines)


def _num(v: Any) -> str:
    return "—" if v is None or v != v else f"{v:.1f}"
