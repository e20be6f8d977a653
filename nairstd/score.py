"""Score a folder of predicted maps from any method against a dataset (the `score` command).

A prediction is one PNG per image, same stem, holding the target probability x 255 (or a 0/255
mask). It is binarised at probability > 0.5 (`--threshold`), i.e. pixel value > 127.5, exactly as
our own models' outputs are, so numbers from other toolboxes and ours are comparable.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nairstd.data.images import IMAGE_EXTENSIONS, DataError, resize_mask_nearest
from nairstd.data.index import DatasetIndex
from nairstd.metrics import IRSTDMetrics
from nairstd.protocols import NATIVE, RESIZE256


def read_prediction(path: Path) -> np.ndarray:
    """Probability map in [0, 1] from an 8-bit (or 16-bit) prediction image."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("L", "I;16", "I", "F"):
                image = image.convert("L")
            array = np.asarray(image)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot read prediction ({err})") from err
    scale = 65535.0 if array.dtype == np.uint16 or array.max(initial=0) > 255 else 255.0
    return array.astype(np.float32) / scale


def find_prediction(pred_dir: Path, stem: str) -> Path:
    for ext in IMAGE_EXTENSIONS:
        candidate = pred_dir / f"{stem}{ext}"
        if candidate.is_file():
            return candidate
    raise DataError(f"{pred_dir}/{stem}.png: missing prediction for image {stem}")


def iter_pairs(
    pred_dir: str | Path,
    index: DatasetIndex,
    stems: list[str],
    protocol: str = NATIVE,
    size: int = 256,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(probability map, ground-truth mask) for every stem, checked; warns at the end when the
    predictions look like 0/1 masks."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: prediction folder not found")
    repeated = sorted(stem for stem, n in Counter(stems).items() if n > 1)
    if repeated:
        raise DataError(f"{len(repeated)} image(s) listed more than once, e.g. {repeated[0]}")
    peak = 0.0  # highest probability over all predictions: 0/1 masks read as 1/255 at most
    for stem in stems:
        pred_file = find_prediction(pred_dir, stem)
        prob = read_prediction(pred_file)
        peak = max(peak, float(prob.max(initial=0.0)))
        _, gt = index.load(stem)
        if protocol == RESIZE256:
            gt = resize_mask_nearest(gt, (size, size))
        if prob.shape != gt.shape:
            hint = " (use --protocol resize256)" if prob.shape == (size, size) else ""
            raise DataError(
                f"{pred_file}: prediction is {prob.shape[1]}x{prob.shape[0]} but the ground truth "
                f"is {gt.shape[1]}x{gt.shape[0]} under protocol {protocol}{hint}"
            )
        yield prob, gt
    if 0.0 < peak <= 1.0 / 255.0 + 1e-9:
        warnings.warn(
            f"{pred_dir}: every prediction holds only 0 and 1: these look like 0/1 masks, which "
            "score as empty (expected probability x 255 or 0/255 masks; multiply them by 255)",
            stacklevel=3,
        )


def score_folder(
    pred_dir: str | Path,
    index: DatasetIndex,
    stems: list[str],
    protocol: str = NATIVE,
    size: int = 256,
    threshold: float = 0.5,
) -> dict:
    """SPEC §6 metrics of the predictions in `pred_dir` for `stems` of `index`, binarised at
    probability > threshold."""
    if not 0.0 < threshold < 1.0:
        raise DataError(f"--threshold must lie strictly between 0 and 1, got {threshold}")
    metrics = IRSTDMetrics(threshold=threshold)
    for prob, gt in iter_pairs(pred_dir, index, stems, protocol, size):
        metrics.update(prob, gt)
    result = metrics.compute()
    result.update({"protocol": protocol, "dataset": index.name, "pred_dir": str(pred_dir)})
    return result
