"""Dataset statistics: the `data stats` command, Table II and the target-size curves of Fig. 3."""

from __future__ import annotations

import json
import warnings
from collections import Counter

import numpy as np
import pandas as pd

from nairstd.data.images import mask_is_binary, resize_image, resize_mask_nearest
from nairstd.data.index import SPLITS, DatasetIndex
from nairstd.metrics import label_objects
from nairstd.protocols import NATIVE, RESIZE256

SMALL_TARGET_PX = 20  # the paper's IRSTD-Hard threshold (8-connected area)


def target_areas(mask: np.ndarray) -> np.ndarray:
    """Pixel areas of the 8-connected components of a bool mask, in label order (the same
    objects the metrics count)."""
    return label_objects(mask)[2]


def target_table(index: DatasetIndex, protocol: str = NATIVE, size: int = 256) -> pd.DataFrame:
    """One row per target: dataset, split, stem, area (px) under the protocol, image size.

    Images without targets get one row with area NaN so image counts stay right.
    """
    split_of = {stem: split for split in SPLITS for stem in index.splits.get(split, [])}
    rows = []
    for stem in index.stems:
        image, mask = index.load(stem)
        if protocol == RESIZE256:
            mask = resize_mask_nearest(mask, (size, size))
            image = resize_image(image, (size, size))
        areas = target_areas(mask)
        base = {
            "dataset": index.name,
            "split": split_of.get(stem, "unlisted"),
            "stem": stem,
            "height": image.shape[0],
            "width": image.shape[1],
        }
        rows += [{**base, "area": float(a)} for a in areas] or [{**base, "area": np.nan}]
    return pd.DataFrame(rows)


def dataset_stats(index: DatasetIndex, check_masks: bool = True) -> dict:
    """Summary of one dataset at native resolution, with the warnings its files raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = target_table(index, protocol=NATIVE)
    images = table.drop_duplicates("stem")
    areas = table["area"].dropna().to_numpy()
    sizes = Counter(f"{w}x{h}" for w, h in zip(images["width"], images["height"], strict=True))
    targets_per_image = table.groupby("stem")["area"].count()
    non_binary = []
    if check_masks:
        non_binary = [s for s in index.stems if not mask_is_binary(index.mask_path(s))]
    return {
        "dataset": index.name,
        "root": str(index.root),
        "layout": index.layout,
        "images": len(index.stems),
        "splits": {s: len(index.splits.get(s, [])) for s in SPLITS},
        "split_source": index.split_source,
        "targets": int(len(areas)),
        "images_without_targets": int((targets_per_image == 0).sum()),
        "images_with_several_targets": int((targets_per_image > 1).sum()),
        "target_area_px": {
            "min": float(areas.min()) if len(areas) else None,
            "median": float(np.median(areas)) if len(areas) else None,
            "mean": round(float(areas.mean()), 2) if len(areas) else None,
            "max": float(areas.max()) if len(areas) else None,
            f"share_under_{SMALL_TARGET_PX}px": round(float((areas < SMALL_TARGET_PX).mean()), 4)
            if len(areas)
            else None,
        },
        "image_sizes": {
            "distinct": len(sizes),
            "most_common": sizes.most_common(1)[0][0],
            "min_wh": [int(images["width"].min()), int(images["height"].min())],
            "max_wh": [int(images["width"].max()), int(images["height"].max())],
        },
        "masks_binary": not non_binary,
        "non_binary_masks": non_binary,
        "warnings": sorted({str(w.message) for w in caught}),
    }


def format_stats(stats: dict) -> str:
    """Human-readable block for the command line."""
    area = stats["target_area_px"]
    sizes = stats["image_sizes"]
    split = stats["splits"]
    lines = [
        f"{stats['dataset']}  ({stats['layout']} layout, {stats['root']})",
        f"  images      {stats['images']}  (train {split['train']} / val {split['val']} / "
        f"test {split['test']}; {stats['split_source']})",
        f"  targets     {stats['targets']} (8-connected); {stats['images_with_several_targets']} "
        f"images with several, {stats['images_without_targets']} with none",
        f"  target area min {area['min']:g} / median {area['median']:g} / mean {area['mean']:g} / "
        f"max {area['max']:g} px; {area[f'share_under_{SMALL_TARGET_PX}px']:.0%} under "
        f"{SMALL_TARGET_PX} px"
        if stats["targets"]
        else "  target area -",
        f"  image sizes {sizes['distinct']} distinct, most common {sizes['most_common']}, "
        f"from {sizes['min_wh'][0]}x{sizes['min_wh'][1]} to {sizes['max_wh'][0]}x{sizes['max_wh'][1]}",
        f"  masks       {'all binary' if stats['masks_binary'] else 'NOT binary: ' + ', '.join(stats['non_binary_masks'][:5])}",
        f"  warnings    {len(stats['warnings'])}",
    ]
    lines += [f"    - {w}" for w in stats["warnings"]]
    return "\n".join(lines)


def table2_row(index: DatasetIndex, kind: str, background: str, size: int = 256) -> dict:
    """Table II row for the test split under the paper's resize-to-256 protocol."""
    table = target_table(index, protocol=RESIZE256, size=size)
    test = table[table["split"] == "test"]
    areas = test["area"].dropna()
    return {
        "dataset": index.name,
        "real_or_simulated": kind,
        "test_size": int(test["stem"].nunique()),
        "image_size": f"{size}x{size}",
        "target_size_range_px": f"{areas.min():g}-{areas.max():g}" if len(areas) else "none",
        "avg_target_size_px": round(float(areas.mean()), 1) if len(areas) else float("nan"),
        "background": background,
    }


def stats_json(stats: list[dict]) -> str:
    return json.dumps(stats, indent=2)
