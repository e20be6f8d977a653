"""Notebook 01 (data preparation): synthetic sets, validation, IRSTD-Hard, Table II, Fig. 3."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from nairstd.data.hard import HARD_NAME, build_irstd_hard
from nairstd.data.index import DatasetIndex, discover_datasets
from nairstd.data.stats import dataset_stats, table2_row, target_table
from nairstd.data.synthetic import PRESETS, preset, write_dataset
from nairstd.paths import generated_data_root
from nairstd.plots import fig3_target_size_curves, sample_grid, save_figure
from nairstd.profiles import check_profile
from nairstd.protocols import RESIZE256
from nairstd.tables import canonical, reported, write_table

# Which paper dataset each generated set stands in for, and its Table II description.
SYNTHETIC_DESCRIPTION = {
    "synthetic": ("Simulated (ours)", "sky/cloud, sea/horizon, ground/urban"),
    "synthetic-nudt": (
        "Simulated (ours; stand-in for NUDT-SIRST)",
        "sky/cloud, sea/horizon, ground/urban",
    ),
    "synthetic-tiny": ("Simulated (ours; targets < 20 px)", "sky/cloud, sea/horizon, ground/urban"),
}


def prepare_datasets(
    profile: str, data_root: str | None = None, datasets: list[str] | None = None
) -> list[DatasetIndex]:
    """Generate the synthetic sets for `profile`, find every dataset, build IRSTD-Hard.

    `datasets` restricts the result to those names (None: all found). IRSTD-Hard is built from
    the test splits of every other dataset found.
    """
    check_profile(profile)
    out_root = generated_data_root()
    for name in PRESETS:
        write_dataset(out_root, name, preset(name, profile))
    found = [d for d in discover_datasets(data_root) if d.name != HARD_NAME]
    if datasets:
        wanted = {canonical(n) for n in datasets}
        found = [d for d in found if canonical(d.name) in wanted]
    # synthetic-tiny holds only small targets by construction: pooling it would swamp the rest.
    sources = [d for d in found if d.split("test") and d.name != "synthetic-tiny"]
    hard = build_irstd_hard(sources, out_root)
    return [*found, hard]


def describe(index: DatasetIndex) -> tuple[str, str]:
    if index.name in SYNTHETIC_DESCRIPTION:
        return SYNTHETIC_DESCRIPTION[index.name]
    if index.name == HARD_NAME:
        meta = json.loads((index.root / "meta.json").read_text())
        sources = ", ".join(s.split(":")[0] for s in meta["sources"])
        return f"Real/Simulated (ours, from {sources} test)", "from its sources"
    return "Real", "not annotated"


def validate(indices: list[DatasetIndex]) -> pd.DataFrame:
    """Read every image and mask of every dataset: one summary row each (warnings included)."""
    rows = []
    for index in indices:
        s = dataset_stats(index)
        rows.append(
            {
                "dataset": s["dataset"],
                "layout": s["layout"],
                "images": s["images"],
                "train": s["splits"]["train"],
                "val": s["splits"]["val"],
                "test": s["splits"]["test"],
                "targets": s["targets"],
                "area_median_px": s["target_area_px"]["median"],
                "area_mean_px": s["target_area_px"]["mean"],
                "masks_binary": s["masks_binary"],
                "warnings": len(s["warnings"]),
                "warning_text": " | ".join(s["warnings"]),
                "split_source": s["split_source"],
            }
        )
    return pd.DataFrame(rows)


def table2(indices: list[DatasetIndex], out_dir: Path, profile: str) -> pd.DataFrame:
    """Table II for our datasets (resize-256 test split) beside the paper's reported rows."""
    ours = []
    for index in indices:
        kind, background = describe(index)
        ours.append({"source": f"measured ({profile})", **table2_row(index, kind, background)})
    paper = reported("table2_datasets").assign(source="reported in paper")
    table = pd.concat([pd.DataFrame(ours), paper], ignore_index=True)
    measured_names = {canonical(i.name) for i in indices}
    shared = [n for n in paper["dataset"] if canonical(n) in measured_names]
    notes = [
        f"profile: {profile}; measured rows: test split resized to 256x256 (the paper's protocol)",
        "reported rows: the paper's Table II as printed",
        "datasets present in both: "
        + (", ".join(shared) if shared else "none")
        + (
            f" ({HARD_NAME} here is built from other source images than the paper's)"
            if HARD_NAME in shared
            else ""
        ),
    ]
    write_table(table, out_dir, "table2_datasets", "Table II - datasets", notes, floatfmt=".1f")
    return table


def fig3(indices: list[DatasetIndex], out_path: Path) -> pd.DataFrame:
    """Fig. 3: cumulative target-size curves (test split, resize-256 protocol)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # validate() already reported them
        tables = [target_table(i, protocol=RESIZE256) for i in indices]
    targets = pd.concat(tables, ignore_index=True)
    targets = targets[targets["split"] == "test"]
    save_figure(fig3_target_size_curves(targets), out_path)
    return targets


def samples_figure(
    indices: list[DatasetIndex], out_path: Path, per_dataset: int = 4, seed: int = 0
):
    """A grid of test images per dataset with their mask contours."""
    rng = np.random.default_rng(seed)
    samples = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for index in indices:
            stems = index.split("test") or index.stems
            for stem in rng.choice(stems, size=min(per_dataset, len(stems)), replace=False):
                image, mask = index.load(str(stem))
                samples.append((f"{index.name}: {stem}", image, mask))
    save_figure(sample_grid(samples, columns=per_dataset), out_path)
