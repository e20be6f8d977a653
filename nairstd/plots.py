"""Figures of the paper, drawn with matplotlib and saved atomically as PNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import patches as mpatches  # noqa: E402
from scipy import ndimage  # noqa: E402

from nairstd.grid import EIGHT_CONNECTED  # noqa: E402
from nairstd.io import write_with  # noqa: E402
from nairstd.metrics import ObjectMatch  # noqa: E402


def save_figure(fig: plt.Figure, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Save as PNG via a temporary file, then close the figure."""
    path = Path(path)
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    plt.close(fig)
    return path


def fig3_target_size_curves(targets: pd.DataFrame, small_px: int = 20) -> plt.Figure:
    """Fig. 3: cumulative distribution of target area per dataset (one curve each).

    `targets` has one row per target with columns `dataset` and `area` (px).
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, group in targets.dropna(subset=["area"]).groupby("dataset", sort=False):
        areas = np.sort(group["area"].to_numpy())
        share = np.arange(1, len(areas) + 1) / len(areas) * 100
        ax.step(areas, share, where="post", label=f"{name} ({len(areas)} targets)")
    ax.axvline(small_px, color="grey", linestyle="--", linewidth=1)
    ax.text(small_px * 1.05, 2, f"{small_px} px (IRSTD-Hard limit)", color="grey", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("target area (pixels, 8-connected, log scale)")
    ax.set_ylabel("targets with area ≤ x (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Cumulative target-size distribution")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return fig


def sample_grid(samples: list[tuple[str, np.ndarray, np.ndarray]], columns: int = 4) -> plt.Figure:
    """Grid of (title, grey image, bool mask) with the mask outlined in red."""
    rows = max(1, int(np.ceil(len(samples) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, image, mask) in zip(axes.ravel(), samples, strict=False):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        if mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors="red", linewidths=0.8)
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


# -------------------------------------------------------------------------------------------------
# Patch and object overlays (Fig. 5 and the selection explorer, nairstd.widgets)
# -------------------------------------------------------------------------------------------------
SELECTED_TARGET = "lime"  # selected patch holding a target
SELECTED_EMPTY = "red"  # selected patch without a target
MISSED = "yellow"  # target patch not selected (dashed)
TARGET_PATCH = "red"  # soft-label panel: patch holding a target
# Width at which explorer figures must stay readable (a JupyterLab output area in a 1440 px window).
DISPLAY_PX = 1000


def outline_patches(
    ax: plt.Axes,
    selected: np.ndarray,
    target_flags: np.ndarray,
    grid: tuple[int, int],
    patch_size: int,
    show_missed: bool = True,
    linewidth: float = 1.4,
    missed_colour: str = MISSED,
    missed_style: str = "--",
) -> dict[str, int]:
    """Outline the selected patches on `ax` (image pixel coordinates): green when the patch holds
    a target, red otherwise; dashed yellow (`missed_colour`, `missed_style`) for target patches
    that were not selected. Returns the counts {"selected_target", "selected_empty", "missed"}."""
    rows, cols = grid
    p = patch_size
    sel = {int(i) for i in np.asarray(selected).reshape(-1)}
    flags = np.asarray(target_flags, dtype=bool).reshape(-1)
    counts = {"selected_target": 0, "selected_empty": 0, "missed": 0}
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        xy = (c * p - 0.5, r * p - 0.5)
        if i in sel:
            colour = SELECTED_TARGET if flags[i] else SELECTED_EMPTY
            counts["selected_target" if flags[i] else "selected_empty"] += 1
            style = "-"
        elif flags[i] and show_missed:
            colour, style = missed_colour, missed_style
            counts["missed"] += 1
        else:
            continue
        ax.add_patch(
            mpatches.Rectangle(
                xy, p, p, fill=False, edgecolor=colour, linewidth=linewidth, linestyle=style
            )
        )
    return counts


def patch_legend_handles(show_missed: bool = True) -> list[mpatches.Patch]:
    handles = [
        mpatches.Patch(fill=False, edgecolor=SELECTED_TARGET, label="selected, holds a target"),
        mpatches.Patch(fill=False, edgecolor=SELECTED_EMPTY, label="selected, no target"),
    ]
    if show_missed:
        handles.append(
            mpatches.Patch(
                fill=False, edgecolor=MISSED, linestyle="--", label="target patch not selected"
            )
        )
    return handles


def mark_targets(ax: plt.Axes, mask: np.ndarray, radius: float = 7.0, colour: str = "cyan") -> None:
    """A ring around every ground-truth object (8-connected), leaving the target itself visible."""
    lab, n = ndimage.label(mask, structure=EIGHT_CONNECTED)
    for cy, cx in ndimage.center_of_mass(mask, lab, range(1, n + 1)) if n else []:
        ax.add_patch(mpatches.Circle((cx, cy), radius, fill=False, edgecolor=colour, linewidth=1))


def mark_objects(ax: plt.Axes, match: ObjectMatch, radius: float = 6.0) -> None:
    """Hits (green rings), misses (yellow rings, dashed) and false alarms (red squares)."""
    matched_gt = {g for g, _ in match.pairs}
    for k, (cy, cx) in enumerate(match.gt_centroids, start=1):
        hit = k in matched_gt
        ax.add_patch(
            mpatches.Circle(
                (cx, cy),
                radius,
                fill=False,
                edgecolor="lime" if hit else "yellow",
                linestyle="-" if hit else "--",
                linewidth=1.3,
            )
        )
    for k in match.unmatched_pred:
        cy, cx = match.pred_centroids[k - 1]
        ax.add_patch(
            mpatches.Rectangle(
                (cx - radius, cy - radius),
                2 * radius,
                2 * radius,
                fill=False,
                edgecolor="red",
                linewidth=1.3,
            )
        )


def object_legend_handles() -> list[Any]:
    from matplotlib.lines import Line2D

    return [
        Line2D([], [], marker="o", ls="", mfc="none", mec="lime", label="target detected"),
        Line2D([], [], marker="o", ls="", mfc="none", mec="yellow", label="target missed"),
        Line2D([], [], marker="s", ls="", mfc="none", mec="red", label="false alarm"),
    ]


def min_font_pt_at(fig: plt.Figure, width_px: int = DISPLAY_PX) -> float:
    """The smallest visible text of `fig`, in pt, when the saved figure (bbox "tight", as
    `save_figure` writes it) is shown `width_px` CSS pixels wide (96 px per inch)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width_in = fig.get_tightbbox(renderer).width  # inches
    scale = width_px / 96 / width_in
    sizes = [
        t.get_fontsize()
        for t in fig.findobj(lambda a: hasattr(a, "get_fontsize") and hasattr(a, "get_text"))
        if t.get_visible() and t.get_text()
    ]
    return min(sizes) * scale
