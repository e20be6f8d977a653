"""Notebook 03 (Stage 1): train or reuse the scorer with soft and hard labels; Fig. 7 (Top-K
coverage of soft vs hard labels on the test split, and coverage against K)."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from nairstd.data.images import DataError
from nairstd.data.index import find_dataset
from nairstd.plots import save_figure
from nairstd.profiles import check_profile
from nairstd.reproduce import common
from nairstd.tables import write_table
from nairstd.train import RunResult, profile_config, topk_coverage_curve, train
from nairstd.train.config import cpu_threads, profile_threads

KS = (1, 2, 3, 5, 8, 16)
LABELS = ("soft", "hard")
COLOURS = {"soft": "tab:blue", "hard": "tab:orange"}
# Test images scored per profile for Fig. 7 (None: the whole test split).
EVAL_LIMIT = common.EVAL_LIMIT


def pick_dataset(dataset: str, data_root: str | None = None, fallback: str = "synthetic") -> str:
    """`dataset` when it is found, else the synthetic fallback (with a warning)."""
    try:
        return find_dataset(dataset, data_root).name
    except DataError:
        if dataset == fallback:
            raise
        warnings.warn(f"dataset {dataset!r} not found; using {fallback!r} instead", stacklevel=2)
        return find_dataset(fallback, data_root).name


def stage1_config(profile: str, dataset: str, label: str, size: str | None = None, seed: int = 0):
    check_profile(profile)
    return profile_config(profile, "1", dataset=dataset, label=label, size=size, seed=seed)


def train_stage1(
    profile: str,
    dataset: str,
    size: str | None = None,
    labels: tuple[str, ...] = LABELS,
    seed: int = 0,
    runs_dir: str | None = None,
    data_root: str | None = None,
) -> dict[str, RunResult]:
    """Train (or reuse from the cache) one Stage-1 run per label type."""
    runs = {}
    for label in labels:
        config = stage1_config(profile, dataset, label, size, seed)
        runs[label] = train(config, runs_dir=runs_dir, data_root=data_root)
        state = "reused" if runs[label].reused else "trained"
        print(f"{label}: {state} {runs[label].run_dir.name}")
    return runs


def runs_summary(runs: dict[str, RunResult]) -> pd.DataFrame:
    rows = []
    for label, run in runs.items():
        val = run.metrics.get("val") or {}
        rows.append(
            {
                "label": label,
                "run_id": run.run_id,
                "best_epoch": run.metrics.get("best_epoch"),
                "epochs": run.metrics.get("epochs"),
                "val_coverage": val.get("coverage"),
                "val_precision": val.get("precision"),
                "val_score_loss": val.get("score_loss"),
                "train_time_s": run.metrics.get("train_time_s"),
            }
        )
    return pd.DataFrame(rows)


def coverage_table(
    runs: dict[str, RunResult],
    dataset: str,
    ks: tuple[int, ...] = KS,
    split: str = "test",
    limit: int | None = None,
    data_root: str | None = None,
    profile: str | None = None,
) -> pd.DataFrame:
    """Top-K coverage and precision on `split` (resize-256 protocol) per label type and K.

    `profile` sets the CPU threads (one for smoke) and, when `limit` is None, the number of
    test images (EVAL_LIMIT)."""
    index = find_dataset(dataset, data_root)
    if limit is None and profile is not None:
        limit = EVAL_LIMIT[profile]
    if limit is not None:
        index = _limited(index, split, limit)
    rows = []
    with cpu_threads(profile_threads(profile) if profile else None):
        for label, run in runs.items():
            model = run.load_model()
            for r in topk_coverage_curve(model, index, ks, split=split, device="cpu"):
                rows.append({"label": label, **r, "split": split, "run_id": run.run_id})
    return pd.DataFrame(rows)


def _limited(index, split: str, limit: int):
    import dataclasses

    splits = dict(index.splits)
    splits[split] = index.split(split)[:limit]
    return dataclasses.replace(index, splits=splits)


def fig7(table: pd.DataFrame, path: Path, k_default: int = 5) -> Path:
    """Fig. 7: coverage of soft vs hard labels at the default K, and coverage against K."""
    fig, (ax_bar, ax_k) = plt.subplots(1, 2, figsize=(10, 4))
    at_k = table[table["K"] == k_default]
    colours = COLOURS
    ax_bar.bar(
        at_k["label"],
        at_k["coverage"],
        color=[colours.get(lbl, "grey") for lbl in at_k["label"]],
    )
    for x, v in enumerate(at_k["coverage"]):
        ax_bar.text(x, v + 1, f"{v:.1f}", ha="center")
    ax_bar.set_ylim(0, 105)
    ax_bar.set_ylabel("Top-K coverage (%)")
    ax_bar.set_title(f"Soft vs hard labels (K = {k_default})")
    for label, group in table.groupby("label", sort=False):
        c = colours.get(label, None)
        ax_k.plot(group["K"], group["coverage"], "o-", color=c, label=f"{label}: coverage")
        ax_k.plot(
            group["K"], group["precision"], "s--", color=c, alpha=0.6, label=f"{label}: precision"
        )
    ax_k.axvline(k_default, color="grey", linestyle=":", linewidth=1)
    ax_k.set_xscale("log", base=2)
    ax_k.set_xticks(sorted(table["K"].unique()), [str(k) for k in sorted(table["K"].unique())])
    ax_k.set_ylim(0, 105)
    ax_k.set_xlabel("K (selected patches of N)")
    ax_k.set_ylabel("%")
    ax_k.set_title("Coverage against K")
    ax_k.legend(fontsize=8)
    ax_k.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def write_fig7_table(table: pd.DataFrame, out_dir: Path, profile: str, dataset: str) -> None:
    wide = table.pivot_table(index="K", columns="label", values=["coverage", "precision"])
    wide.columns = [f"{metric}_{label}" for metric, label in wide.columns]
    wide = markdown_ready(wide.reset_index())
    notes = [
        f"profile: {profile}; dataset: {dataset}, {table['split'].iloc[0]} split, images resized "
        "to 256x256 (N = 64 patches of 32x32)",
        "coverage: target patches (>= 1 target pixel) among the K selected / all target patches; "
        "precision: selected patches holding a target / selected patches",
        "the paper reports Fig. 7 as a plot only (no numbers to compare)",
    ]
    write_table(wide, out_dir, "fig7_topk_coverage", "Fig. 7 - Top-K coverage", notes)


def markdown_ready(df: pd.DataFrame) -> pd.DataFrame:
    """Cells as Python objects with None for missing: ints print as ints and missing cells as
    'n/c' in the Markdown table (a float frame would print 1.00 and nan)."""
    df = df.copy()
    for col in df.columns:
        if df[col].dtype.kind == "f" and df[col].dropna().apply(float.is_integer).all():
            if col in ("K", "n_images", "best_epoch", "epochs"):
                df[col] = df[col].astype("Int64")
    return df.astype(object).where(df.notna(), None)


def stage1_curves(runs: dict[str, RunResult], path: Path) -> Path:
    """Stage-1 training curves: L_score and validation coverage per epoch, per label type."""
    fig, (ax_loss, ax_cov) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, run in runs.items():
        log = run.log
        c = COLOURS.get(label)
        ax_loss.plot(log["epoch"], log["loss"], color=c, label=f"{label}: train L_score")
        if "val_score_loss" in log:
            v = log.dropna(subset=["val_score_loss"])
            ax_loss.plot(
                v["epoch"], v["val_score_loss"], "o--", color=c, label=f"{label}: val L_score"
            )
        if "val_coverage" in log:
            v = log.dropna(subset=["val_coverage"])
            ax_cov.plot(v["epoch"], v["val_coverage"], "o-", color=c, label=label)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_yscale("log")
    ax_loss.legend(fontsize=8)
    ax_loss.set_title("Stage 1 loss")
    ax_cov.set_xlabel("epoch")
    ax_cov.set_ylabel("val Top-K coverage (%)")
    ax_cov.set_ylim(0, 105)
    ax_cov.legend(fontsize=8)
    ax_cov.set_title("Stage 1 validation coverage")
    fig.tight_layout()
    return save_figure(fig, path)
