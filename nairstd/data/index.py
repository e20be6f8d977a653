"""Dataset folders: layout auto-detection, image/mask lookup and train/val/test splits.

Three layouts are read (SPEC §5):
  (a) ``sirst``   — SIRST as it ships: images/NAME.png, masks/NAME_pixels0.png, idx_427/*.txt
  (b) ``toolbox`` — images/, masks/ (same stem), img_idx/{train,val,test}_<DS>.txt
  (c) ``irstd1k`` — IRSTD1k_Img/, IRSTD1k_Label/, trainval.txt, test.txt

Splits: the dataset's own lists when present; else the lists shipped in nairstd/data/splits/ for
the well-known datasets; else a seeded 50/30/20 split. When only train/test lists exist, the
validation split is carved from train (20%, seeded) so model selection never looks at test.
"""

from __future__ import annotations

import os
import random
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from nairstd.data.images import (
    IMAGE_EXTENSIONS,
    DataError,
    read_image,
    read_mask,
    resize_mask_nearest,
)
from nairstd.paths import data_roots

SPLITS = ("train", "val", "test")
VAL_FRACTION_OF_TRAIN = 0.2  # when a dataset ships only train/test lists
SEEDED_FRACTIONS = (0.5, 0.3, 0.2)  # the paper's split when a dataset has no lists
# Folder names of the datasets whose official lists ship with the package.
SHIPPED_SPLITS = {
    "nuaa-sirst": "NUAA-SIRST",
    "nudt-sirst": "NUDT-SIRST",
    "irstd-1k": "IRSTD-1K",
    "irstd1k": "IRSTD-1K",
}

_warned_mismatch: set[str] = set()


@dataclass
class DatasetIndex:
    """One dataset on disk: where its files are and how it is split."""

    name: str
    root: Path
    layout: str  # "sirst", "toolbox" or "irstd1k"
    image_dir: Path
    mask_dir: Path
    mask_suffix: str  # appended to the image stem to name its mask ("_pixels0" for SIRST)
    stems: list[str]  # every image with a file, sorted
    splits: dict[str, list[str]]
    split_source: str  # human-readable origin of the splits
    _image_files: dict[str, Path] = field(default_factory=dict, repr=False)

    def image_path(self, stem: str) -> Path:
        try:
            return self._image_files[stem]
        except KeyError:
            raise DataError(f"{self.image_dir}/{stem}.*: no image with this stem") from None

    def mask_path(self, stem: str) -> Path:
        for ext in IMAGE_EXTENSIONS:
            candidate = self.mask_dir / f"{stem}{self.mask_suffix}{ext}"
            if candidate.is_file():
                return candidate
        raise DataError(
            f"{self.mask_dir}/{stem}{self.mask_suffix}.png: missing mask for image "
            f"{self.image_path(stem)}"
        )

    def load(self, stem: str) -> tuple[np.ndarray, np.ndarray]:
        """(float32 grey image in [0,1], bool mask), both (H, W) at the image's size.

        A mask of another size than its image is resized (nearest) with one warning naming it.
        """
        image = read_image(self.image_path(stem))
        mask_file = self.mask_path(stem)
        mask = read_mask(mask_file)
        if mask.shape != image.shape:
            key = str(mask_file)
            if key not in _warned_mismatch:
                _warned_mismatch.add(key)
                warnings.warn(
                    f"{mask_file}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                    f"{image.shape[1]}x{image.shape[0]}; resized the mask (nearest neighbour)",
                    stacklevel=2,
                )
            mask = resize_mask_nearest(mask, image.shape)
        return image, mask

    def split(self, name: str) -> list[str]:
        if name == "all":
            return list(self.stems)
        if name not in self.splits:
            raise ValueError(f"{self.root}: no split {name!r}; have {sorted(self.splits)}")
        return list(self.splits[name])


def _list_images(folder: Path) -> dict[str, Path]:
    files = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."):
            files.setdefault(path.stem, path)
    return files


def _read_list(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not a UTF-8 text list of image names ({err.reason})") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read list ({err.strerror or err})") from None
    stems = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            stems.append(Path(line).stem if Path(line).suffix in IMAGE_EXTENSIONS else line)
    return stems


def detect_layout(root: Path) -> str | None:
    """'sirst', 'toolbox', 'irstd1k', or None when the folder is not a dataset."""
    if (root / "IRSTD1k_Img").is_dir() and (root / "IRSTD1k_Label").is_dir():
        return "irstd1k"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        masks = root / "masks"
        if any(p.stem.endswith("_pixels0") for p in masks.iterdir()):
            return "sirst"
        return "toolbox"
    return None


def _seeded_split(stems: list[str], seed: int) -> dict[str, list[str]]:
    order = sorted(stems)
    random.Random(seed).shuffle(order)
    n_train = round(SEEDED_FRACTIONS[0] * len(order))
    n_val = round(SEEDED_FRACTIONS[1] * len(order))
    return {
        "train": sorted(order[:n_train]),
        "val": sorted(order[n_train : n_train + n_val]),
        "test": sorted(order[n_train + n_val :]),
    }


def _carve_val(train: list[str], seed: int) -> tuple[list[str], list[str]]:
    order = list(train)
    random.Random(seed).shuffle(order)
    n_val = max(1, round(VAL_FRACTION_OF_TRAIN * len(order))) if len(order) > 1 else 0
    return sorted(order[n_val:]), sorted(order[:n_val])


def _find_lists(root: Path, layout: str, name: str) -> tuple[dict[str, Path], str]:
    """Split list files of a dataset folder (or the shipped ones), and where they came from."""
    if layout == "sirst" and (root / "idx_427").is_dir():
        lists = {s: root / "idx_427" / f"{s}.txt" for s in SPLITS}
        return {s: p for s, p in lists.items() if p.is_file()}, "official idx_427 lists"
    if layout == "irstd1k":
        lists = {"train": root / "trainval.txt", "test": root / "test.txt"}
        return {s: p for s, p in lists.items() if p.is_file()}, "official trainval/test lists"
    idx = root / "img_idx"
    if idx.is_dir():
        found = {}
        for split in SPLITS:
            matches = sorted(idx.glob(f"{split}_*.txt")) or sorted(idx.glob(f"{split}.txt"))
            if matches:
                found[split] = matches[0]
        if found:
            return found, f"lists in {idx.name}/"
    shipped = SHIPPED_SPLITS.get(name.lower())
    if shipped:
        base = resources.files("nairstd.data") / "splits" / shipped
        found = {}
        for split in ("train", "test"):
            entry = base / f"{split}_{shipped}.txt"
            if entry.is_file():
                found[split] = Path(str(entry))
        if found:
            return found, f"official {shipped} lists shipped with nairstd"
    return {}, ""


def open_dataset(root: str | os.PathLike, name: str | None = None, seed: int = 0) -> DatasetIndex:
    """Index a dataset folder: detect its layout, list its images, resolve its splits."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    layout = detect_layout(root)
    if layout is None:
        raise DataError(
            f"{root}: not a dataset folder (expected images/ + masks/, or IRSTD1k_Img/ + "
            "IRSTD1k_Label/; see README 'Datasets')"
        )
    name = name or root.name
    if layout == "irstd1k":
        image_dir, mask_dir, suffix = root / "IRSTD1k_Img", root / "IRSTD1k_Label", ""
    else:
        image_dir, mask_dir = root / "images", root / "masks"
        suffix = "_pixels0" if layout == "sirst" else ""
    image_files = _list_images(image_dir)
    if not image_files:
        raise DataError(f"{image_dir}: no images ({', '.join(IMAGE_EXTENSIONS)})")

    list_files, source = _find_lists(root, layout, name)
    splits: dict[str, list[str]] = {}
    for split, path in list_files.items():
        stems = _read_list(path)
        missing = [s for s in stems if s not in image_files]
        if missing:
            raise DataError(
                f"{path}: {len(missing)} listed image(s) not in {image_dir}, e.g. {missing[0]}"
            )
        splits[split] = stems
    if not splits:
        splits = _seeded_split(list(image_files), seed)
        source = f"seeded 50/30/20 split (seed {seed})"
    elif "val" not in splits and "train" in splits:
        splits["train"], splits["val"] = _carve_val(splits["train"], seed)
        source += f"; val carved from train ({VAL_FRACTION_OF_TRAIN:.0%}, seed {seed})"
    for split in SPLITS:
        splits.setdefault(split, [])
    return DatasetIndex(
        name=name,
        root=root,
        layout=layout,
        image_dir=image_dir,
        mask_dir=mask_dir,
        mask_suffix=suffix,
        stems=sorted(image_files),
        splits=splits,
        split_source=source,
        _image_files=image_files,
    )


def find_dataset(name_or_path: str | os.PathLike, data_root: str | None = None) -> DatasetIndex:
    """Open a dataset given as a folder path or as a name looked up in the data roots."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_dir():
        return open_dataset(candidate)
    roots = data_roots(data_root)
    for root in roots:
        for folder in (root / str(name_or_path), *_case_insensitive(root, str(name_or_path))):
            if folder.is_dir() and detect_layout(folder):
                return open_dataset(folder)
    raise DataError(
        f"dataset {str(name_or_path)!r} not found in {', '.join(map(str, roots))} "
        "(give a folder path, set NAIRSTD_DATA, or generate the synthetic sets with "
        "`python -m nairstd data synth`)"
    )


def _case_insensitive(root: Path, name: str) -> list[Path]:
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.name.lower() == name.lower()]


def discover_datasets(data_root: str | None = None) -> list[DatasetIndex]:
    """Every dataset folder directly under the data roots (first root wins on a name clash).

    Hidden folders are skipped: they are another process's half-written dataset
    (`.NAME.partial-PID-*`, `io.atomic_dir`) or a tool's (.ipynb_checkpoints), never a dataset,
    and reading one races its writer (two `reference run` processes on a fresh checkout pooled
    a partial synthetic-tiny into IRSTD-Hard and failed on its vanished files)."""
    found: dict[str, DatasetIndex] = {}
    for root in data_roots(data_root):
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if folder.name.startswith("."):
                continue
            if folder.is_dir() and folder.name not in found and detect_layout(folder):
                found[folder.name] = open_dataset(folder)
    return list(found.values())
