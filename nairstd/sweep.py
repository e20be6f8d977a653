"""Operating points: Pd against false alarms over thresholds (the field's ROC-style curve).

`sweep(pairs, thresholds)` scores the same (probability map, mask) pairs at every threshold with
the SPEC §6 metrics (nairstd.metrics.IRSTDMetrics), one row per threshold: Pd (%), Fa (x1e-6),
false targets per frame (unmatched predicted objects / frames), IoU. `score --sweep` writes these
rows as CSV and draws Pd against false targets per frame and against Fa.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nairstd.isolation import IsolationTest, suppress_structure_ends
from nairstd.metrics import IRSTDMetrics
from nairstd.protocols import NATIVE

DEFAULT_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.05))
COLUMNS = ["threshold", "Pd", "Fa", "fa_per_frame", "IoU", "n_images", "n_gt_objects"]


def sweep(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
    images: Sequence[np.ndarray] | None = None,
    structures: IsolationTest | None = None,
) -> list[dict[str, Any]]:
    """One row per threshold over all (probability map, bool mask) pairs. With `structures` (and
    the input `images`, one per pair), the detections the isolation test calls structure ends
    at each threshold are dropped first, as predict drops them (nairstd.isolation)."""
    if structures is not None and (images is None or len(images) != len(pairs)):
        raise ValueError("the isolation test needs one input image per probability map")
    rows = []
    for t in thresholds:
        metrics = IRSTDMetrics(threshold=float(t))
        for i, (prob, mask) in enumerate(pairs):
            if structures is not None:
                prob, _ = suppress_structure_ends(images[i], prob, float(t), structures)
            metrics.update(prob, mask)
        m = metrics.compute()
        rows.append(
            {
                "threshold": float(t),
                "Pd": m["Pd"],
                "Fa": m["Fa"],
                "fa_per_frame": m["FA_per_image"],
                "IoU": m["IoU"],
                "n_images": m["n_images"],
                "n_gt_objects": m["n_gt_objects"],
            }
        )
    return rows


def probability_maps(
    model: Any,
    frames: Iterable[tuple[np.ndarray, np.ndarray]],
    protocol: str = NATIVE,
    device: str = "cpu",
    preprocessing: dict | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(probability map, mask) per (image, mask) frame; `model` is a torch model or a classical
    method's function (image -> map), run as `predict` runs it."""
    from torch import nn

    from nairstd.probability import classical_probability, predict_probability

    out = []
    for image, mask in frames:
        if isinstance(model, nn.Module):
            prob = predict_probability(
                model, image, protocol, device=device, preprocessing=preprocessing
            )
        else:
            prob = classical_probability(model, image, protocol)
        out.append((prob, np.asarray(mask, bool)))
    return out


def sweep_folder(
    pred_dir: str | Path,
    index: Any,
    stems: list[str],
    csv_path: str | Path,
    protocol: str = NATIVE,
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
    list_file: str | Path | None = None,
) -> list[dict[str, Any]]:
    """`score --sweep`: the sweep of a folder of predicted PNGs, written to `csv_path` and its
    figure to the same name with .png. Neither may land on an input (a prediction, a file of the
    dataset, the list file): checked before anything is read."""
    from nairstd.score import iter_pairs

    csv_path = Path(csv_path)
    figure = csv_path.with_suffix(".png")
    if csv_path == figure:
        raise ValueError(f"--sweep {csv_path}: the figure goes beside it as .png; name a .csv")
    sweep_inputs(pred_dir, index, stems, list_file).refuse(csv_path, figure)
    pairs = list(iter_pairs(pred_dir, index, stems, protocol))
    rows = sweep(pairs, thresholds)
    write_sweep(rows, csv_path)
    plot_sweeps({Path(pred_dir).name: rows}, figure)
    return rows


def sweep_inputs(
    pred_dir: str | Path, index: Any, stems: list[str], list_file: str | Path | None = None
) -> Any:
    """What `score --sweep` reads (nairstd.io.InputFiles): every prediction file a stem could
    take, every file in the dataset's folder (images, masks, split lists) and the list file."""
    from nairstd.data.images import IMAGE_EXTENSIONS
    from nairstd.io import InputFiles

    pred_dir = Path(pred_dir)
    inputs = InputFiles(p for p in Path(index.root).rglob("*") if p.is_file())
    inputs.add(pred_dir / f"{stem}{ext}" for stem in stems for ext in IMAGE_EXTENSIONS)
    return inputs.add([list_file] if list_file else [])


def write_sweep(rows: list[dict[str, Any]], csv_path: str | Path) -> Path:
    """The rows as CSV (atomically)."""
    import pandas as pd

    from nairstd.io import write_text

    return write_text(csv_path, pd.DataFrame(rows, columns=COLUMNS).to_csv(index=False))


def plot_sweeps(curves: dict[str, list[dict[str, Any]]], path: str | Path, title: str = ""):
    """Pd against false targets per frame (left) and against Fa (right), one line per method;
    the threshold 0.5 point is marked. Saved to `path` (PNG); returns the figure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from nairstd.io import write_with

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    # One colour per method from a 20-colour map (the default cycle repeats after 10 methods) and
    # a marker that changes every 10, so no two methods look alike.
    colours = plt.get_cmap("tab20").colors
    for i, (name, rows) in enumerate(curves.items()):
        rows = sorted(rows, key=lambda r: r["threshold"])
        pd_ = [r["Pd"] for r in rows]
        style = dict(color=colours[(2 * i) % 20 + (i // 10) % 2], marker=".^s"[(i // 10) % 3])
        for ax, key in zip(axes, ("fa_per_frame", "Fa")):
            ax.plot([r[key] for r in rows], pd_, label=name, markersize=4, **style)
            half = [r for r in rows if abs(r["threshold"] - 0.5) < 1e-9]
            if half:
                ax.plot(half[0][key], half[0]["Pd"], "o", color=style["color"], mfc="none")
    axes[0].set_xlabel("false targets per frame")
    axes[1].set_xlabel("Fa (x1e-6, false-alarm pixels)")
    for ax in axes:
        ax.set_xscale("symlog", linthresh=0.01 if ax is axes[0] else 1.0)
        ax.set_ylabel("Pd (%)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center right")  # beside the plots, not on them
    fig.suptitle(f"{title or 'Pd against false alarms over thresholds'} (circle: threshold 0.5)")
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    write_with(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    return fig
