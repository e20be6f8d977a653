"""Notebook 06 (ablations, continued): the impact of K (Fig. 7, K panel), Fig. 5 (native-branch
vs detector features) and the selection explorer. Tables IV and V with claims C2 and C3 are in
`reproduce.ablation_tables`.

  K  the two-stage soft model (seed 0) evaluated with K changed at test time (no retraining; the
     paper retrains per K: `retrain_k=True` does that in the paper profile)
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from nairstd.data.index import DatasetIndex
from nairstd.data.stats import SMALL_TARGET_PX, target_areas
from nairstd.grid import pad_array
from nairstd.metrics import target_patch_flags
from nairstd.models.native_branch import unpatchify
from nairstd.plots import mark_targets, outline_patches, patch_legend_handles, save_figure
from nairstd.profiles import get_profile
from nairstd.reproduce.arms import Trained, measure
from nairstd.reproduce.parallel import describe
from nairstd.tables import markdown_ready, write_table
from nairstd.train import RunResult, train
from nairstd.train.config import TrainConfig
from nairstd.widgets import load_sample

KS = (1, 2, 3, 5, 8, 16)
METRICS = ["IoU", "nIoU", "Pd", "Fa", "FA_per_image", "coverage", "precision", "n_images"]
K_NOTE = "K changed at test time; the paper retrains per K"
K_RETRAINED_NOTE = "one Stage-2 run per K (from the same soft-label Stage 1), as the paper"


def train_logged(config: TrainConfig, data_root: str | None = None) -> RunResult:
    """`train(config)` (cache hit or training) with one line saying which."""
    start = time.perf_counter()
    run = train(config, data_root=data_root)
    state = "reused" if run.reused else f"trained in {time.perf_counter() - start:.0f} s"
    print(f"{describe(config)}: {state} -> {run.run_id}", flush=True)
    return run


# -------------------------------------------------------------------------------------------------
# Impact of K
# -------------------------------------------------------------------------------------------------
K_COLUMNS = ["coverage", "precision", "IoU", "nIoU", "Pd", "Fa", "FA_per_image", "n_images"]


def default_top_k(run: RunResult) -> int:
    """The K a run's model selects by default (its config's top_k, else the model's)."""
    if isinstance(run.config.top_k, int):
        return run.config.top_k
    k = run.load_model().top_k
    return int(k) if isinstance(k, int) else 5


def k_table(
    evaluate: Callable[[int], dict[str, Any]], ks: Iterable[int] = KS, default_k: int = 5
) -> pd.DataFrame:
    """One row per K: coverage / precision of the selection and the detection metrics.
    `evaluate(K)` returns a metrics dict (cached_eval of a model with that K)."""
    rows = []
    for k in ks:
        r = evaluate(int(k))
        rows.append(
            {"K": int(k), "default": int(k) == default_k, **{m: r.get(m) for m in K_COLUMNS}}
        )
    return pd.DataFrame(rows)


def k_impact(
    soft: Trained,
    index: DatasetIndex,
    profile: str,
    ks: Iterable[int] = KS,
    retrain_k: bool = False,
    data_root: str | None = None,
) -> tuple[pd.DataFrame, bool]:
    """(K table, retrained?) of the two-stage soft model on the test split of `index`.

    Default: the trained model with K changed at test time (no retraining). `retrain_k` (paper
    profile only) trains one Stage 2 per K from the same Stage-1 run, as the paper does."""
    run = soft.final
    default_k = default_top_k(run)
    if retrain_k and not get_profile(profile).retrain_k:
        warnings.warn(
            f"retrain_k is for the paper profile (one Stage 2 per K); profile {profile!r}: "
            "K is changed at test time instead",
            stacklevel=2,
        )
        retrain_k = False
    if not retrain_k:
        return k_table(lambda k: measure(soft, index, profile, top_k=k), ks, default_k), False

    def evaluate(k: int) -> dict[str, Any]:
        if k == default_k:
            return measure(soft, index, profile)
        # Same config and Stage-1 run (init_from) as the default run, K changed.
        config = run.config.replace(top_k=k)
        t = Trained(f"na_irstd two-stage soft K={k}", [train_logged(config, data_root)])
        return measure(t, index, profile)

    return k_table(evaluate, ks, default_k), True


def write_k_table(
    table: pd.DataFrame,
    soft: Trained,
    index: DatasetIndex,
    out_dir: Path,
    profile: str,
    retrained: bool = False,
) -> tuple[Path, Path]:
    limit = get_profile(profile).eval_limit
    scored = f"the first {limit} (at most) test images" if limit else "the whole test split"
    notes = [
        f"profile: {profile}; na_irstd two-stage soft ({soft.final.run_id}), measured on {scored} "
        f"of {index.name} (resized to 256x256: N = 64 patches of 32x32)",
        K_RETRAINED_NOTE if retrained else K_NOTE,
        "coverage: target patches among the K selected / all target patches; precision: "
        "selected patches holding a target / K (%); IoU / nIoU / Pd in %, Fa x1e-6",
        "default: the K the model was trained with; the paper reports this study as a plot "
        "only (no numbers to compare)",
    ]
    return write_table(
        markdown_ready(table), out_dir, "table_k_impact", "Impact of K (Fig. 7, K)", notes
    )


def fig_k(table: pd.DataFrame, path: Path, retrained: bool = False) -> Path:
    """Coverage / precision (left) and IoU / nIoU / Pd with Fa on a second axis (right) vs K."""
    ks = table["K"].to_numpy()
    default = table.loc[table["default"].astype(bool), "K"]
    fig, (ax_cov, ax_det) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax_cov.plot(ks, table["coverage"], "o-", color="tab:blue", label="Top-K coverage")
    ax_cov.plot(ks, table["precision"], "s--", color="tab:blue", alpha=0.6, label="precision")
    ax_cov.set_ylabel("coverage, precision (%)")
    ax_cov.set_ylim(0, 105)
    ax_cov.set_title("Selected patches")
    for key, style, colour in (("IoU", "o-", "tab:green"), ("nIoU", "^-", "tab:olive")):
        ax_det.plot(ks, table[key], style, color=colour, label=key)
    ax_det.plot(ks, table["Pd"], "s-", color="tab:purple", label="Pd")
    ax_det.set_ylabel("IoU, nIoU, Pd (%)")
    ax_det.set_ylim(0, 105)
    ax_det.set_title("Detection")
    ax_fa = ax_det.twinx()
    ax_fa.plot(ks, table["Fa"], "d:", color="tab:red", label="Fa (right axis)")
    ax_fa.set_ylabel("Fa (x1e-6)", color="tab:red")
    ax_fa.tick_params(axis="y", colors="tab:red")
    top = pd.to_numeric(table["Fa"], errors="coerce").max()
    ax_fa.set_ylim(0, 1.15 * top if top and np.isfinite(top) and top > 0 else 1)
    for ax in (ax_cov, ax_det):
        for k in default:
            ax.axvline(k, color="grey", linestyle=":", linewidth=1.2)
            ax.text(k * 1.04, 101, f"default K = {k}", color="grey", fontsize=8, va="top")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("K (selected patches of N = 64)")
        ax.grid(alpha=0.3)
    below = dict(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8, frameon=False)
    ax_cov.legend(ncol=2, **below)
    lines = ax_det.get_legend_handles_labels()
    lines_fa = ax_fa.get_legend_handles_labels()
    ax_det.legend(lines[0] + lines_fa[0], lines[1] + lines_fa[1], ncol=4, **below)
    how = K_RETRAINED_NOTE if retrained else K_NOTE
    fig.suptitle(f"Impact of K - {how}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


# -------------------------------------------------------------------------------------------------
# Fig. 5: features
# -------------------------------------------------------------------------------------------------
def native_feature_map(features: Tensor, grid: tuple[int, int]) -> Tensor:
    """Native-branch features of one stage (B, N, d, P_l, P_l) back on the image lattice:
    (B, d, rows * P_l, cols * P_l) (patch (r, c) = index r * cols + c goes to rows r*P_l..)."""
    if features.dim() != 5:
        raise ValueError(f"expected (B, N, d, P, P) native features, got {tuple(features.shape)}")
    if features.shape[1] != grid[0] * grid[1]:
        raise ValueError(f"{features.shape[1]} patches do not fill a {grid[0]}x{grid[1]} grid")
    return unpatchify(features, grid)


def channel_mean_abs(f: Tensor, size: tuple[int, int]) -> np.ndarray:
    """Channel mean of |F| (B=1, C, h, w), bilinearly resized to `size` -> (H, W) numpy."""
    m = f.detach().float().abs().mean(dim=1, keepdim=True)
    if tuple(m.shape[-2:]) != tuple(size):
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
    return m[0, 0].cpu().numpy()


@torch.inference_mode()
def feature_maps(model: torch.nn.Module, x: Tensor, stage: int = 0) -> dict[str, Any]:
    """Stage-`stage` maps of one image (1, 1, H, W) on the image lattice (H, W): detector F_l^bb,
    native F_l^na (unpatchified), fused F_l (after injection); plus the prediction and selection."""
    model = model.eval()
    out = model(x, return_extras=True)
    H, W = x.shape[-2:]
    grid = tuple(int(g) for g in out["patch_grid"])
    padded = (grid[0] * model.patch_size, grid[1] * model.patch_size)
    native = native_feature_map(out["features_native"][stage], grid)
    maps = {
        "detector": channel_mean_abs(out["features_detector"][stage], padded),
        "native": channel_mean_abs(native, padded),
        "fused": channel_mean_abs(out["features_fused"][stage], padded),
    }
    return {
        **{k: v[:H, :W] for k, v in maps.items()},
        "prob": torch.sigmoid(out["logits"].float())[0, 0].cpu().numpy(),
        "selected": out["selected"][0].cpu().numpy(),
        "grid": grid,
    }


def small_target_stems(
    index: DatasetIndex,
    n: int = 3,
    split: str = "test",
    size: int = 256,
    max_area: int = SMALL_TARGET_PX,
) -> list[str]:
    """`n` images of a split with small targets: every target under `max_area` px at size x size
    (split order), topped up with the images whose largest target is smallest."""
    small, others = [], []
    for stem in index.split(split):
        _, mask, _ = load_sample(index, stem, size)
        areas = target_areas(mask)
        if not len(areas):
            continue
        if areas.max() < max_area:
            small.append(stem)
            if len(small) == n:
                return small
        else:
            others.append((int(areas.max()), stem))
    return small + [stem for _, stem in sorted(others)[: n - len(small)]]


FIG5_COLUMNS = (
    "image, Top-K patches",
    "detector F_1 (stride 4)",
    "native branch F_1 (unpatchified)",
    "fused F_1 (after injection)",
    "prediction (sigmoid)",
)


def fig5(
    model: torch.nn.Module,
    index: DatasetIndex,
    stems: list[str],
    path: Path,
    title: str = "",
) -> Path:
    """Fig. 5: per image, the image with the selected patches, the stage-1 detector, native and
    fused features (channel-mean |F|, each scaled to its own range) and the prediction."""
    if not stems:
        raise ValueError("fig5 needs at least one image")
    model = model.cpu().eval()
    n = len(stems)
    fig, axes = plt.subplots(n, 5, figsize=(15, 3.1 * n + 0.9), squeeze=False)
    multiple = int(getattr(model, "pad_multiple", model.patch_size))
    for row, stem in enumerate(stems):
        image, mask, x = load_sample(index, stem)
        maps = feature_maps(model, x)
        flags = target_patch_flags(pad_array(mask, multiple), model.patch_size)
        panels = [
            (image, "gray"),
            (maps["detector"], "inferno"),
            (maps["native"], "inferno"),
            (maps["fused"], "inferno"),
            (maps["prob"], "gray"),
        ]
        for col, (ax, (a, cmap)) in enumerate(zip(axes[row], panels)):
            lo, hi = (0.0, 1.0) if col in (0, 4) else (float(a.min()), float(a.max()))
            ax.imshow(a, cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1e-6)
            mark_targets(ax, mask, colour="cyan")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(FIG5_COLUMNS[col], fontsize=9)
        outline_patches(axes[row][0], maps["selected"], flags, maps["grid"], model.patch_size)
        axes[row][0].set_ylabel(stem, fontsize=8)
    handles = patch_legend_handles()
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], marker="o", ls="", mfc="none", mec="cyan", label="target"))
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, facecolor="0.8")
    fig.suptitle(
        "Fig. 5 - stage-1 features: detector vs native-resolution branch "
        "(channel-mean |F|, each map scaled to its own range)" + (f"\n{title}" if title else ""),
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save_figure(fig, path)
