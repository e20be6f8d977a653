"""A synthetic dataset on disk in the toolbox layout (SPEC §5 (b)), written crash-safely."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from nairstd.data.synthetic.generator import generate_image, image_rng
from nairstd.data.synthetic.presets import GENERATOR_VERSION, SyntheticConfig
from nairstd.io import (
    atomic_dir,
    generated_by,
    refuse_foreign_folder,
    save_png,
    write_json,
    write_text,
)


# --------------------------------------------------------------------------------------------------
# Dataset on disk (layout (b) of SPEC §5)
# --------------------------------------------------------------------------------------------------
def _stem(i: int) -> str:
    return f"synth_{i:05d}"


def split_stems(stems: list[str], fractions: tuple[float, float, float], seed: int) -> dict:
    """Seeded train/val/test split: round(f_train·n), round(f_val·n), the rest; every non-empty
    part keeps at least one image when n >= 3."""
    n = len(stems)
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**32 - 1,))).permutation(
        n
    )
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    if n >= 3:
        n_train = max(1, min(n_train, n - 2)) if fractions[0] > 0 else 0
        n_val = max(1, min(n_val, n - n_train - 1)) if fractions[1] > 0 else 0
    n_val = min(n_val, n - n_train)
    shuffled = [stems[j] for j in order]
    parts = {
        "train": shuffled[:n_train],
        "val": shuffled[n_train : n_train + n_val],
        "test": shuffled[n_train + n_val :],
    }
    return {k: sorted(v) for k, v in parts.items()}


def _split_files(name: str) -> dict[str, str]:
    return {k: f"img_idx/{k}_{name}.txt" for k in ("train", "val", "test")}


def dataset_is_complete(folder: Path, name: str, config: SyntheticConfig) -> bool:
    """True when `folder` holds the full dataset of exactly this config and generator version."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if meta.get("generator_version") != GENERATOR_VERSION or meta.get("config") != config.to_dict():
        return False
    stems = [_stem(i) for i in range(config.n_images)]
    if meta.get("stems") != stems:
        return False
    for rel in _split_files(name).values():
        if not (folder / rel).is_file():
            return False
    images = {p.name for p in (folder / "images").glob("*.png")}
    masks = {p.name for p in (folder / "masks").glob("*.png")}
    want = {f"{s}.png" for s in stems}
    return want <= images and want <= masks


def write_dataset(
    root: str | os.PathLike, name: str, config: SyntheticConfig, overwrite: bool = False
) -> Path:
    """Write the dataset to ``root/name/`` in the toolbox layout (SPEC §5 (b)) and return the folder.

    ``images/<stem>.png`` (uint8 grey), ``masks/<stem>.png`` (0/255), ``img_idx/{train,val,test}_
    <name>.txt`` (one stem per line, seeded ``config.split_fractions`` split) and ``meta.json``
    (config, generator version, stems, per-image target areas and a summary). Stems are
    ``synth_00000``, ``synth_00001``, ...

    Idempotent: a folder already holding the complete dataset of this config is left untouched
    (unless ``overwrite``). Otherwise the dataset is written into a hidden temporary sibling and
    renamed into place at the end, so an interrupted run never leaves a complete-looking folder.
    """
    root = Path(root)
    final = root / name
    if not overwrite and dataset_is_complete(final, name, config):
        return final
    refuse_foreign_folder(final, lambda folder: generated_by(folder, "generator_version"))
    keep = None if overwrite else (lambda folder: dataset_is_complete(folder, name, config))
    with atomic_dir(final, keep=keep) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        stems = [_stem(i) for i in range(config.n_images)]
        per_image: dict[str, dict[str, Any]] = {}
        for i, stem in enumerate(stems):
            image, mask, info = generate_image(image_rng(config.seed, i), config)
            save_png(image, tmp / "images" / f"{stem}.png")
            save_png(mask, tmp / "masks" / f"{stem}.png")
            per_image[stem] = {
                "target_areas": [t["area"] for t in info["targets"]],
                "scr": [t["scr"] for t in info["targets"]],
                "background": info["background"],
                "hard_negatives": [h["kind"] for h in info["hard_negatives"]],
            }
        splits = split_stems(stems, config.split_fractions, config.seed)
        for part, rel in _split_files(name).items():
            write_text(tmp / rel, "".join(f"{s}\n" for s in splits[part]))
        areas = np.array([a for v in per_image.values() for a in v["target_areas"]], dtype=float)
        summary = {
            "n_targets": int(areas.size),
            "area_min": float(areas.min()) if areas.size else None,
            "area_max": float(areas.max()) if areas.size else None,
            "area_mean": round(float(areas.mean()), 3) if areas.size else None,
            "area_median": float(np.median(areas)) if areas.size else None,
            "frac_under_20px": round(float((areas < 20).mean()), 4) if areas.size else None,
        }
        meta = {
            "name": name,
            "kind": "simulated",
            "generator": "nairstd.data.synthetic",
            "generator_version": GENERATOR_VERSION,
            "layout": "toolbox",
            "config": config.to_dict(),
            "n_images": config.n_images,
            "image_size": [config.image_size, config.image_size],
            "stems": stems,
            "splits": {k: len(v) for k, v in splits.items()},
            "summary": summary,
            "images": per_image,
        }
        write_json(tmp / "meta.json", meta)  # written last: its presence marks completeness
    return final


# --------------------------------------------------------------------------------------------------
# Clutter sets (out-of-distribution check): test frames only, several sizes and bit depths
# --------------------------------------------------------------------------------------------------
def _clutter_stem(i: int) -> str:
    return f"clutter_{i:05d}"


def clutter_set_is_complete(folder: Path, name: str, n: int) -> bool:
    """True when `folder` holds the first `n` frames of clutter set `name` of this version."""
    from nairstd.data.synthetic.clutter import CLUTTER_VERSION, clutter_config

    try:
        meta = json.loads((Path(folder) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    stems = [_clutter_stem(i) for i in range(n)]
    if (
        meta.get("generator_version") != CLUTTER_VERSION
        or meta.get("config") != clutter_config(name).to_dict()
        or meta.get("stems") != stems
    ):
        return False
    return all(
        (Path(folder) / sub / f"{s}.png").is_file() for s in stems for sub in ("images", "masks")
    )


def write_clutter_set(root: str | os.PathLike, name: str, n: int, overwrite: bool = False) -> Path:
    """Write the first `n` frames of clutter set `name` (nairstd.data.synthetic.clutter) to
    ``root/name/`` in the toolbox layout, every frame in the test split (train and val lists
    empty: these sets are for checking a model, never for training or choosing one).

    ``images/clutter_NNNNN.png`` is 8-bit (after the frame's AGC) or 16-bit (raw counts) grey, as
    the frame was drawn; ``masks/`` 0/255 (all zero in a target-free set); ``meta.json`` holds
    the config, the generator version and every frame's size, bit depth, scene, sensor and
    targets. The OOD check draws the same frames in memory (`nairstd.ood.clutter_frames`).
    Idempotent and crash-safe like `write_dataset`.
    """
    from nairstd.data.synthetic.clutter import CLUTTER_VERSION, clutter_config, clutter_frame

    config = clutter_config(name)
    final = Path(root) / name
    if not overwrite and clutter_set_is_complete(final, name, n):
        return final
    refuse_foreign_folder(final, lambda folder: generated_by(folder, "generator_version"))
    keep = None if overwrite else (lambda folder: clutter_set_is_complete(folder, name, n))
    with atomic_dir(final, keep=keep) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        stems = [_clutter_stem(i) for i in range(n)]
        frames: dict[str, dict[str, Any]] = {}
        for i, stem in enumerate(stems):
            frame = clutter_frame(config, i)
            save_png(frame.image, tmp / "images" / f"{stem}.png")
            save_png(frame.mask, tmp / "masks" / f"{stem}.png")
            frames[stem] = frame.info
        for part in ("train", "val", "test"):
            listed = stems if part == "test" else []
            write_text(tmp / _split_files(name)[part], "".join(f"{s}\n" for s in listed))
        meta = {
            "name": name,
            "kind": "simulated, out-of-distribution check",
            "generator": "nairstd.data.synthetic.clutter",
            "generator_version": CLUTTER_VERSION,
            "layout": "toolbox",
            "config": config.to_dict(),
            "n_images": n,
            "stems": stems,
            "frames": frames,
        }
        write_json(tmp / "meta.json", meta)  # written last: its presence marks completeness
    return final
