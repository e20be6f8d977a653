"""Detect targets in your own images with a trained checkpoint.

    python -m nairstd predict --checkpoint outputs/runs/<run-id> --input photos/ --output out/

For every input image (any size, 8/16-bit, grey or colour) a PNG with the same stem and the same
size as the input, holding the target probability x 255, plus `detections.csv` with one row per
detected target (8-connected component of probability > 0.5): image, target id, centroid x and y
(pixels, x = column), area (px) and peak probability.

Protocols: ``native`` (default) runs the model on the full-resolution image (it pads to its patch
multiple and crops back); ``resize256`` predicts at 256x256 and resizes the map back bilinearly.
A file that cannot be read is reported (naming it) and skipped; the others are processed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from torch import nn

from nairstd.data.images import IMAGE_EXTENSIONS, DataError, read_image, resize_image
from nairstd.data.preprocess import checkpoint_preprocessing, normalize_image, resize_input
from nairstd.io import save_png, write_text
from nairstd.metrics import label_objects
from nairstd.train.checkpoint import load_model, resolve_device, unwrap
from nairstd.train.evaluate import classical_method

DETECTION_COLUMNS = ["image", "target_id", "x", "y", "area", "peak_probability"]


@dataclass
class PredictResult:
    output_dir: Path
    written: list[Path] = field(default_factory=list)  # probability PNGs
    failures: list[tuple[str, str]] = field(default_factory=list)  # (input, message)
    detections: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=DETECTION_COLUMNS)
    )
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures


def collect_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files from files and folders (a folder gives its image files, sorted by name).

    Returns (files, failures): a missing path or a folder without images is a failure.
    """
    files: list[Path] = []
    failures: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not found:
                failures.append((str(path), f"{path}: no image files in this folder"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            failures.append((str(path), f"{path}: file not found"))
    return files, failures


@torch.inference_mode()
def predict_probability(
    model: nn.Module,
    image: np.ndarray,
    protocol: str = "native",
    size: int = 256,
    device: torch.device | str = "cpu",
    preprocessing: dict | None = None,
) -> np.ndarray:
    """Target probability map (H, W) float32 in [0, 1] for a float [0, 1] grey image (H, W).

    `preprocessing`: the input preprocessing the weights expect (nairstd.data.preprocess; None:
    ours). The map is always resized back with our bilinear resize.
    """
    if protocol not in ("native", "resize256"):
        raise ValueError(f"protocol must be native or resize256, got {protocol!r}")
    prep = checkpoint_preprocessing({"preprocessing": preprocessing})
    h, w = image.shape
    x = resize_input(image, (size, size), prep["resize"]) if protocol == "resize256" else image
    x = torch.from_numpy(np.ascontiguousarray(normalize_image(x, prep["normalize"])))[None, None]
    logits = unwrap(model)(x.to(device))
    prob = torch.sigmoid(logits.float())[0, 0].cpu().numpy()
    if protocol == "resize256":
        prob = resize_image(prob, (h, w))
    return prob.astype(np.float32)


def classical_probability(
    method: Callable[[np.ndarray], np.ndarray], image: np.ndarray, protocol: str, size: int = 256
) -> np.ndarray:
    """Map of a training-free method, under the same protocols as the networks."""
    h, w = image.shape
    x = resize_image(image, (size, size)) if protocol == "resize256" else image
    prob = np.clip(method(x.astype(np.float32)), 0.0, 1.0).astype(np.float32)
    return resize_image(prob, (h, w)) if protocol == "resize256" else prob


def detections(prob: np.ndarray, image_name: str, threshold: float = 0.5) -> list[dict]:
    """One row per 8-connected component of prob > threshold."""
    labels, centroids, areas = label_objects(prob > threshold)
    n = len(areas)
    if n == 0:
        return []
    peaks = ndimage.maximum(prob, labels, index=np.arange(1, n + 1))
    return [
        {
            "image": image_name,
            "target_id": i + 1,
            "x": float(centroids[i][1]),
            "y": float(centroids[i][0]),
            "area": int(areas[i]),
            "peak_probability": float(peaks[i]),
        }
        for i in range(n)
    ]


def to_uint8(prob: np.ndarray) -> np.ndarray:
    return np.clip(np.round(prob * 255.0), 0, 255).astype(np.uint8)


def predict_files(
    checkpoint: str | os.PathLike | nn.Module,
    inputs: Iterable[str | os.PathLike],
    output_dir: str | os.PathLike,
    protocol: str = "native",
    device: str | torch.device | None = "auto",
    size: int = 256,
    log: Callable[[str], None] | None = None,
) -> PredictResult:
    """Predict every input image; write `<stem>.png` maps and `detections.csv` to output_dir.

    `checkpoint` is a checkpoint file, a run folder, a model, or the name of a classical method
    (nairstd.baselines.CLASSICAL, e.g. "pstnn"). Failures are collected in the
    result (and logged) and never stop the other images.
    """
    say = log or (lambda line: print(line, flush=True))
    device = resolve_device(device)
    classical = classical_method(checkpoint) if isinstance(checkpoint, str) else None
    prep = checkpoint_preprocessing(None)
    if classical is not None:
        model = None  # a training-free method: maps come from `classical(image)`
    elif isinstance(checkpoint, nn.Module):
        model = unwrap(checkpoint).to(device).eval()
    else:
        model, ckpt = load_model(checkpoint, device)
        prep = checkpoint_preprocessing(ckpt)  # e.g. imported peer weights: /255 at 256x256
        size = int(prep["input_size"] or size)
    out = Path(output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    files, failures = collect_inputs(inputs)
    result = PredictResult(out, failures=list(failures))
    for _, message in failures:
        say(f"error: {message}")
    rows: list[dict] = []
    owners: dict[str, Path] = {}
    start = time.perf_counter()
    for file in files:
        target = out / f"{file.stem}.png"
        try:
            if file.stem in owners:
                raise DataError(
                    f"{file}: same stem as {owners[file.stem]}; its output would overwrite "
                    f"{target.name}"
                )
            if target.resolve() == file.resolve():
                raise DataError(f"{file}: the output {target} would overwrite this input")
            image = read_image(file)
            if classical is not None:
                prob = classical_probability(classical, image, protocol, size)
            else:
                prob = predict_probability(model, image, protocol, size, device, prep)
            save_png(to_uint8(prob), target)
        except DataError as err:
            result.failures.append((str(file), str(err)))
            say(f"error: {err} (skipped)")
            continue
        owners[file.stem] = file
        result.written.append(target)
        rows.extend(detections(prob, file.name))
    result.seconds = time.perf_counter() - start
    result.detections = pd.DataFrame(rows, columns=DETECTION_COLUMNS)
    write_text(out / "detections.csv", result.detections.to_csv(index=False))
    return result
