"""IRSTD-Hard (paper §III-C): test images whose every target is small, pooled across datasets.

The paper keeps, from TEST partitions only, the images whose every target is under 20 px
(8-connected area) and resizes them to 256x256; models are trained on other datasets' train
splits. Here it is built from whichever test partitions exist (SIRST test, synthetic test).
Areas are measured after the resize, at the 256x256 the metrics use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nairstd.data.images import DataError, resize_image, resize_mask_nearest
from nairstd.data.index import DatasetIndex, open_dataset
from nairstd.data.stats import SMALL_TARGET_PX, target_areas
from nairstd.io import (
    atomic_dir,
    generated_by,
    refuse_foreign_folder,
    save_png,
    write_json,
    write_text,
)

HARD_NAME = "IRSTD-Hard"
BUILDER_VERSION = 1


def select_hard(index: DatasetIndex, size: int = 256, max_area: int = SMALL_TARGET_PX) -> list[str]:
    """Test stems of `index` with at least one target and every target under `max_area` px."""
    keep = []
    for stem in index.split("test"):
        _, mask = index.load(stem)
        areas = target_areas(resize_mask_nearest(mask, (size, size)))
        if len(areas) and areas.max() < max_area:
            keep.append(stem)
    return keep


def build_irstd_hard(
    sources: list[DatasetIndex], out_root: Path, size: int = 256, name: str = HARD_NAME
) -> DatasetIndex:
    """Write IRSTD-Hard in the toolbox layout under out_root/name (test list only); idempotent."""
    if not sources:
        raise ValueError("IRSTD-Hard needs at least one dataset with a test split")
    out = Path(out_root) / name
    for source in sources:  # the swap below replaces `out` and everything in it
        root = Path(source.root).resolve()
        if root == out.resolve() or out.resolve() in root.parents:
            raise DataError(
                f"{out}: refusing to replace this folder, it holds the source dataset "
                f"{source.root}; choose another --out"
            )
    meta = {
        "builder_version": BUILDER_VERSION,
        "size": size,
        "max_area_px": SMALL_TARGET_PX,
        "sources": sorted(f"{s.name}:{s.root}" for s in sources),
    }
    meta_file = out / "meta.json"
    if meta_file.is_file():
        import json

        old = json.loads(meta_file.read_text())
        if {k: old.get(k) for k in meta} == meta:
            return open_dataset(out, name=name)

    refuse_foreign_folder(out, lambda folder: generated_by(folder, "builder_version"))
    # Built in a temporary folder swapped in last, so an interrupted build never looks complete.
    with atomic_dir(out) as tmp:
        stems, per_source = [], {}
        for source in sources:
            chosen = select_hard(source, size)
            per_source[source.name] = {
                "test_images": len(source.split("test")),
                "kept": len(chosen),
            }
            for stem in chosen:
                image, mask = source.load(stem)
                image = resize_image(image, (size, size))
                mask = resize_mask_nearest(mask, (size, size))
                new_stem = f"{source.name}__{stem}"
                save_png(np.round(image * 255).astype(np.uint8), tmp / "images" / f"{new_stem}.png")
                save_png(mask, tmp / "masks" / f"{new_stem}.png")
                stems.append(new_stem)
        if not stems:
            raise ValueError(
                f"no test image of {', '.join(s.name for s in sources)} has only targets under "
                f"{SMALL_TARGET_PX} px"
            )
        write_text(tmp / "img_idx" / f"test_{name}.txt", "\n".join(stems) + "\n")
        write_json(tmp / "meta.json", {**meta, "per_source": per_source, "images": len(stems)})
    return open_dataset(out, name=name)
