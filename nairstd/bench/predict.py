"""Detection throughput: `python -m nairstd bench predict [--model na_irstd] [--sizes 640x512 1920x1080]`.

For every frame size, eager and compiled side by side: the model's forward pass alone
(`predict_probability`: standardise, forward, sigmoid; best of N, as frames/s and megapixels/s)
and `predict` end to end (read the file, run the model, write the probability PNG, label the
detections; reading and writing overlap the model in threads) on generated 8-bit images, with an
untrained model of the given size, plus the best time of each of those steps alone.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nairstd.protocols import NATIVE

DEFAULT_SIZES = ("640x512", "1920x1080")


def parse_size(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' -> (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size {text!r} is not WIDTHxHEIGHT, e.g. 640x512"
        ) from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return w, h


def _forward_best(model, image: np.ndarray, protocol: str, device: str, n: int) -> float:
    """Best-of-n seconds of one `predict_probability` call (after one warm-up call)."""
    from nairstd.predict import predict_probability

    predict_probability(model, image, protocol, device=device)
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        predict_probability(model, image, protocol, device=device)
        best = min(best, time.perf_counter() - t0)
    return best


def _phases_ms(model, folder: Path, protocol: str, device: str) -> dict[str, float]:
    """Best ms of each step `predict` runs per image, over the PNGs in `folder` (one pass each):
    read, model (standardise + forward + sigmoid), PNG write, detections."""
    from nairstd.data.images import read_image
    from nairstd.predict import (
        PNG_COMPRESS_LEVEL,
        detections,
        predict_probability,
        save_png,
        to_uint8,
    )

    best: dict[str, float] = {}

    def timed(name: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        best[name] = min(best.get(name, float("inf")), 1000 * (time.perf_counter() - t0))
        return out

    for file in sorted(folder.glob("*.png")):
        image = timed("read", read_image, file)
        prob = timed("model", predict_probability, model, image, protocol, device=device)
        out = folder.parent / "phases.png"
        timed("write_png", save_png, to_uint8(prob), out, compress_level=PNG_COMPRESS_LEVEL)
        timed("detections", detections, prob, file.name)
    return best


def bench_predict(
    size: str = "tiny",
    model_name: str = "na_irstd",
    n: int = 10,
    sizes: tuple[tuple[int, int], ...] = ((640, 512), (1920, 1080)),
    protocol: str = NATIVE,
    device: str = "cpu",
    modes: tuple[str, ...] = ("eager", "compiled"),
    end_to_end: bool = True,
) -> list[dict]:
    """One row per (frame size, mode): forward frames/s and MP/s (best of n), end-to-end images/s."""
    from nairstd.compiling import compile_model
    from nairstd.predict import predict_files
    from nairstd.zoo import build_model

    torch.manual_seed(0)
    model = build_model(model_name, size).to(device).eval()
    rng = np.random.default_rng(0)
    rows = []
    for width, height in sizes:
        image = rng.random((height, width), dtype=np.float32)
        for mode in modes:
            net = compile_model(model) if mode == "compiled" else model
            t0 = time.perf_counter()
            from nairstd.predict import predict_probability

            predict_probability(net, image, protocol, device=device)  # compiles when compiled
            first = time.perf_counter() - t0
            best = _forward_best(net, image, protocol, device, n)
            row = {
                "model": model_name,
                "size": size,
                "image": f"{width}x{height}",
                "mode": mode,
                "protocol": protocol,
                "device": device,
                "threads": torch.get_num_threads(),
                "load_1min": os.getloadavg()[0],
                "first_call_s": first,
                "forward_ms": 1000 * best,
                "forward_frames_per_s": 1 / best,
                "forward_megapixels_per_s": width * height / 1e6 / best,
                "images": n,
                "failures": 0,
                "images_per_s": None,
                "phases_ms": None,  # best ms of each predict step (end-to-end runs only)
            }
            if end_to_end:
                with tempfile.TemporaryDirectory() as tmp:
                    folder = Path(tmp) / "in"
                    folder.mkdir()
                    for i in range(n):
                        frame = rng.normal(80, 10, (height, width)).clip(0, 255).astype(np.uint8)
                        Image.fromarray(frame).save(folder / f"img{i:03d}.png")
                    start = time.perf_counter()
                    result = predict_files(
                        net,
                        [folder],
                        Path(tmp) / "out",
                        protocol,
                        device=device,
                        log=lambda _: None,
                    )
                    row["images_per_s"] = n / (time.perf_counter() - start)
                    row["failures"] = len(result.failures)
                    row["phases_ms"] = _phases_ms(net, folder, protocol, device)
            rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> str:
    """Eager and compiled side by side per frame size, with the speed-up."""
    if not rows:
        return ""
    r0 = rows[0]
    lines = [
        f"predict {r0['model']} ({r0['size']}), {r0['protocol']}, {r0['device']} x "
        f"{r0['threads']} threads, forward best of {r0['images']}; load {r0['load_1min']:.2f}",
        f"{'frame':>10} {'mode':>9} {'fwd ms':>8} {'frames/s':>9} {'MP/s':>7} {'e2e img/s':>10} "
        f"{'1st call s':>10}",
    ]
    by = {}
    for r in rows:
        e2e = "-" if r["images_per_s"] is None else f"{r['images_per_s']:.2f}"
        lines.append(
            f"{r['image']:>10} {r['mode']:>9} {r['forward_ms']:8.1f} "
            f"{r['forward_frames_per_s']:9.2f} {r['forward_megapixels_per_s']:7.2f} {e2e:>10} "
            f"{r['first_call_s']:10.1f}"
        )
        by[(r["image"], r["mode"])] = r
    for r in rows:
        if r.get("phases_ms"):
            steps = ", ".join(f"{k} {v:.1f}" for k, v in r["phases_ms"].items())
            lines.append(f"{r['image']} {r['mode']} per-image steps (best ms): {steps}")
    for (image, mode), r in by.items():
        if mode == "compiled" and (image, "eager") in by:
            ratio = by[(image, "eager")]["forward_ms"] / r["forward_ms"]
            lines.append(f"{image}: compiled forward is {ratio:.2f}x eager speed")
    return "\n".join(lines)
