"""Detection throughput: `python -m nairstd bench predict [--model na_irstd detector]
[--modes eager compiled onnxruntime] [--sizes 640x512 1920x1080]`.

For every frame size, each model under each mode side by side: torch eager, torch compiled
(`torch.compile`, one graph per input size), onnxruntime (one graph for every size, as `export`
writes by default and `predict --checkpoint model.onnx` runs it) and onnxruntime-fixed (one
fixed-size graph per input size, exported on first use: `predict --backend onnxruntime` on a
checkpoint, `nairstd.onnx_sized`): the forward pass alone (`predict_probability`: standardise, forward, sigmoid,
tiles above 1024 px; as frames/s and megapixels/s) and `predict` end to end (read the file, run
the model, write the probability PNG, label the detections; reading and writing overlap the model
in threads) on generated 8-bit images, with untrained models of the given size, plus the best time
of each of those steps alone. With `detector` among the models, each other model's forward
time over the detector's (na_irstd / detector) under every mode.

Timing on a shared machine: after each configuration's first two calls ("warm-up": they
compile, export the fixed-size graphs, size onnxruntime's buffers), the forward passes run interleaved, one per configuration per
round for N rounds, so every configuration sees the same load; best and median of N are kept.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path
from typing import Any

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


MODES = ("eager", "compiled", "onnxruntime", "onnxruntime-fixed")


def _nets(models: dict[str, Any], mode: str, device: str) -> dict[str, Any]:
    """Each model as `mode` runs it: itself, torch.compile'd, or exported onto onnxruntime."""
    from nairstd.compiling import compile_model
    from nairstd.export import in_memory_onnx
    from nairstd.onnx_backend import OnnxModel
    from nairstd.onnx_sized import SizedOnnxModel

    if mode == "eager":
        return dict(models)
    if mode == "compiled":
        return {name: compile_model(m) for name, m in models.items()}
    if mode == "onnxruntime":
        return {  # exported from a CPU copy: the torch models stay on their device
            name: OnnxModel.load(in_memory_onnx(copy.deepcopy(m).cpu(), {"model": name}), device)
            for name, m in models.items()
        }
    if mode == "onnxruntime-fixed":
        return {
            name: SizedOnnxModel(copy.deepcopy(m).cpu(), {"model": name}, device)
            for name, m in models.items()
        }
    raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")


def bench_predict(
    size: str = "tiny",
    model_names: tuple[str, ...] | str = ("na_irstd",),
    n: int = 10,
    sizes: tuple[tuple[int, int], ...] = ((640, 512), (1920, 1080)),
    protocol: str = NATIVE,
    device: str = "cpu",
    modes: tuple[str, ...] = MODES,
    end_to_end: bool = True,
) -> list[dict]:
    """One row per (frame size, model, mode): forward best / median of n interleaved rounds,
    frames/s, MP/s, first call; end-to-end images/s and per-step best ms."""
    from nairstd.predict import predict_files, predict_probability
    from nairstd.zoo import build_model

    names = (model_names,) if isinstance(model_names, str) else tuple(model_names)
    models = {}
    for name in names:
        torch.manual_seed(0)
        models[name] = build_model(name, size).to(device).eval()
    prepare: dict[str, float] = {}
    nets: dict[tuple[str, str], Any] = {}
    for mode in modes:
        t0 = time.perf_counter()
        for name, net in _nets(models, mode, device).items():
            nets[(name, mode)] = net
        prepare[mode] = (time.perf_counter() - t0) / len(names)
    rng = np.random.default_rng(0)
    rows = []
    for width, height in sizes:
        image = rng.random((height, width), dtype=np.float32)
        first: dict[tuple[str, str], float] = {}
        for key, net in nets.items():  # compiles; exports the fixed-size graphs (2nd call)
            t0 = time.perf_counter()
            for _ in range(2):
                predict_probability(net, image, protocol, device=device)
            first[key] = time.perf_counter() - t0
        times: dict[tuple[str, str], list[float]] = {key: [] for key in nets}
        for _ in range(n):
            for key, net in nets.items():
                t0 = time.perf_counter()
                predict_probability(net, image, protocol, device=device)
                times[key].append(time.perf_counter() - t0)
        for (name, mode), net in nets.items():
            best = min(times[(name, mode)])
            row = {
                "model": name,
                "size": size,
                "image": f"{width}x{height}",
                "mode": mode,
                "protocol": protocol,
                "device": device,
                "threads": torch.get_num_threads(),
                "load_1min": os.getloadavg()[0],
                "prepare_s": prepare[mode],  # compile_model / dynamic export + session, per model
                "warmup_s": first[(name, mode)],  # the first two calls
                "forward_ms": 1000 * best,
                "forward_median_ms": 1000 * float(np.median(times[(name, mode)])),
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


def ratio_lines(rows: list[dict]) -> list[str]:
    """Each model's forward time over detector's (and over eager), per frame size and mode."""
    by = {(r["image"], r["model"], r["mode"]): r["forward_ms"] for r in rows}
    lines = []
    images = list(dict.fromkeys(r["image"] for r in rows))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    for image in images:
        for model in models:
            eager = by.get((image, model, "eager"))
            for mode in modes:
                if mode != "eager" and eager and (image, model, mode) in by:
                    speed = eager / by[(image, model, mode)]
                    lines.append(f"{image} {model}: {mode} forward is {speed:.2f}x eager speed")
        if "detector" in models:
            for model in models:
                if model == "detector":
                    continue
                parts = [
                    f"{mode} {by[(image, model, mode)] / by[(image, 'detector', mode)]:.2f}x"
                    for mode in modes
                    if (image, model, mode) in by and (image, "detector", mode) in by
                ]
                lines.append(f"{image} {model} / detector forward: {', '.join(parts)}")
    return lines


def format_rows(rows: list[dict]) -> str:
    """Every (frame, model, mode) row, the per-step times, speed-ups and model ratios."""
    if not rows:
        return ""
    r0 = rows[0]
    lines = [
        f"predict ({r0['size']}), {r0['protocol']}, {r0['device']} x {r0['threads']} threads, "
        f"forward best / median of {r0['images']} interleaved rounds; load {r0['load_1min']:.2f}",
        f"{'frame':>10} {'model':>9} {'mode':>17} {'fwd ms':>8} {'median':>8} {'frames/s':>9} "
        f"{'MP/s':>7} {'e2e img/s':>10} {'warm-up s':>10} {'prepare s':>9}",
    ]
    for r in rows:
        e2e = "-" if r["images_per_s"] is None else f"{r['images_per_s']:.2f}"
        lines.append(
            f"{r['image']:>10} {r['model']:>9} {r['mode']:>17} {r['forward_ms']:8.1f} "
            f"{r['forward_median_ms']:8.1f} {r['forward_frames_per_s']:9.2f} "
            f"{r['forward_megapixels_per_s']:7.2f} {e2e:>10} {r['warmup_s']:10.1f} "
            f"{r['prepare_s']:9.1f}"
        )
    for r in rows:
        if r.get("phases_ms"):
            steps = ", ".join(f"{k} {v:.1f}" for k, v in r["phases_ms"].items())
            lines.append(
                f"{r['image']} {r['model']} {r['mode']} per-image steps (best ms): {steps}"
            )
    return "\n".join(lines + ratio_lines(rows))
