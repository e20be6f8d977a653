"""onnxruntime against PyTorch on real frames: `python -m nairstd bench parity`.

For each checkpoint (default: the shipped na_irstd and detector) and each frame of a dataset's
test split, at its native size and rescaled to 640x512 and 1920x1080 (bilinear, as `ood` does),
both backends run the same `predict_probability` (the checkpoint's protocol and preprocessing,
tiled above 1024 px) and the same `detections` at the checkpoint's threshold. Per model and size:
the largest probability difference (max abs over every pixel of every frame), the frames whose
detections agree (every row's image, id, centroid and area equal; peak within `TOLERANCE`), the
frames whose `detections.csv` text is byte-identical (the CSV prints the float32 peak with 17
digits, so a 1e-7 difference shows there), and the PNG pixels (probability x 255) that differ.
The ONNX side is the checkpoint exported in memory at a dynamic size (`nairstd.export`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

TOLERANCE = 1e-4
SIZES: dict[str, tuple[int, int] | None] = {
    "native": None,
    "640x512": (512, 640),
    "1920x1080": (1080, 1920),
}


def detections_agree(a: list[dict], b: list[dict], tol: float = TOLERANCE) -> bool:
    """Same detections: equal rows but for the peak probability, which agrees within `tol`."""
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        if any(ra[k] != rb[k] for k in ("image", "target_id", "x", "y", "area")):
            return False
        if abs(ra["peak_probability"] - rb["peak_probability"]) > tol:
            return False
    return True


def _csv(rows: list[dict]) -> str:
    from nairstd.predict import DETECTION_COLUMNS

    return pd.DataFrame(rows, columns=DETECTION_COLUMNS).to_csv(index=False)


def compare_frame(
    torch_model: Any,
    onnx_model: Any,
    image: np.ndarray,
    name: str,
    protocol: str,
    threshold: float,
    preprocessing: dict | None = None,
) -> dict[str, Any]:
    """Both backends on one float [0, 1] frame: differences and agreement (one row)."""
    from nairstd.predict import detections, predict_probability, to_uint8

    size = int((preprocessing or {}).get("input_size") or 256)
    maps = {}
    seconds = {}
    for key, model in (("torch", torch_model), ("onnxruntime", onnx_model)):
        t0 = time.perf_counter()
        maps[key] = predict_probability(model, image, protocol, size, preprocessing=preprocessing)
        seconds[key] = time.perf_counter() - t0
    a, b = maps["torch"], maps["onnxruntime"]
    rows_a, rows_b = detections(a, name, threshold), detections(b, name, threshold)
    return {
        "image": name,
        "pixels": int(a.size),
        "max_abs_diff": float(np.max(np.abs(a - b))),
        "detections": len(rows_a),
        "detections_agree": detections_agree(rows_a, rows_b),
        "csv_identical": _csv(rows_a) == _csv(rows_b),
        "png_pixels_differ": int(np.count_nonzero(to_uint8(a) != to_uint8(b))),
        "torch_s": seconds["torch"],
        "onnxruntime_s": seconds["onnxruntime"],
    }


def summarize(frames: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per (model, size) from its frame rows."""
    return {
        "frames": len(frames),
        "max_abs_diff": max((f["max_abs_diff"] for f in frames), default=float("nan")),
        "detections": sum(f["detections"] for f in frames),
        "frames_detections_agree": sum(f["detections_agree"] for f in frames),
        "frames_csv_identical": sum(f["csv_identical"] for f in frames),
        "png_pixels_differ": sum(f["png_pixels_differ"] for f in frames),
        "pixels": sum(f["pixels"] for f in frames),
        "torch_s": sum(f["torch_s"] for f in frames),
        "onnxruntime_s": sum(f["onnxruntime_s"] for f in frames),
    }


def parity(
    checkpoints: list[str] | None = None,
    dataset: str = "SIRST",
    sizes: tuple[str, ...] = tuple(SIZES),
    limit: int | None = None,
    data_root: str | None = None,
    log: Any = None,
) -> list[dict[str, Any]]:
    """One summary row per (checkpoint, size) over the test split (first `limit` frames)."""
    from nairstd.data.images import read_image, resize_image
    from nairstd.data.index import find_dataset
    from nairstd.data.preprocess import checkpoint_preprocessing
    from nairstd.export import in_memory_onnx
    from nairstd.onnx_backend import OnnxModel
    from nairstd.operating import operating_point, shipped_path
    from nairstd.train.checkpoint import load_model

    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise ValueError(f"unknown size {unknown[0]!r}; one of {', '.join(SIZES)}")
    index = find_dataset(dataset, data_root)
    stems = index.split("test")[:limit]
    paths = checkpoints or [str(shipped_path("na_irstd")), str(shipped_path("detector"))]
    rows = []
    for path in paths:
        model, ckpt = load_model(path, "cpu")
        onnx_model = OnnxModel.load(in_memory_onnx(model, ckpt), "cpu")
        protocol, threshold = operating_point(ckpt)
        prep = checkpoint_preprocessing(ckpt)
        frames: dict[str, list[dict]] = {s: [] for s in sizes}
        for stem in stems:
            image = read_image(index.image_path(stem))
            for size in sizes:
                shape = SIZES[size]
                frame = image if shape is None else resize_image(image, shape)
                name = index.image_path(stem).name
                frames[size].append(
                    compare_frame(model, onnx_model, frame, name, protocol, threshold, prep)
                )
        for size in sizes:
            row = {
                "model": ckpt["model"],
                "checkpoint": path,
                "dataset": index.name,
                "size": size,
                "protocol": protocol,
                "threshold": threshold,
                **summarize(frames[size]),
            }
            rows.append(row)
            if log is not None:
                log(format_rows([row], header=False))
    return rows


def format_rows(rows: list[dict[str, Any]], header: bool = True) -> str:
    """A Markdown table (the README's)."""
    lines = []
    if header:
        lines += [
            "| model | size | frames | max abs diff | detections | frames: detections agree | "
            "frames: CSV identical | PNG pixels differing | torch s | onnxruntime s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['size']} | {r['frames']} | {r['max_abs_diff']:.2e} | "
            f"{r['detections']} | {r['frames_detections_agree']} / {r['frames']} | "
            f"{r['frames_csv_identical']} / {r['frames']} | {r['png_pixels_differ']} of "
            f"{r['pixels']} | {r['torch_s']:.1f} | {r['onnxruntime_s']:.1f} |"
        )
    return "\n".join(lines)
