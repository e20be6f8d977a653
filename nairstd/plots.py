"""Figures of the paper, drawn with matplotlib and saved atomically as PNG."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nairstd.io import write_with  # noqa: E402


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
