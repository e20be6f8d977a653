"""Detect targets in your own images with a trained checkpoint.

    python -m nairstd predict --checkpoint outputs/runs/<run-id> --input photos/ --output out/
    python -m nairstd predict --input photos/ --output out/     # the shipped na_irstd

For every input image (any size, 8/16-bit, grey or colour) a PNG with the same stem and the same
size as the input, holding the target probability x 255, plus `detections.csv` with one row per
detected target (8-connected component of probability > the threshold: the checkpoint's
operating threshold, else 0.5; a checkpoint from `calibrate` carries one set on the user's own
target-free frames, and predict says so): image, target id, centroid x and y
(pixels, x = column), area (px) and peak probability.

Protocols (default: the one the checkpoint was trained for, native when it does not say;
nairstd.operating): ``native`` runs the model on the full-resolution image (it pads to its patch
multiple and crops back); ``resize256`` predicts at 256x256 and resizes the map back bilinearly.
Under ``native`` an image larger than `tile` px on a side is run in overlapping windows at native
resolution (each window keeps only its core; the margin around it gives every kept pixel its
context), so memory stays bounded at any image size.

Backends (`backend`, `--backend`): ``torch`` runs the model in PyTorch; ``onnxruntime`` runs an
exported .onnx file (`python -m nairstd export`), or a checkpoint exported in memory, one
fixed-size graph per input size on first use (nairstd.onnx_sized: faster than one dynamic graph;
the same checks as `export`); ``auto`` (default) is onnxruntime for an .onnx file, else torch.
Both go through the same preprocessing, tiling, thresholds and outputs (nairstd.probability). A
fixed-size .onnx file is not tiled at its own size (it was exported for whole frames).

Safety: every input and its output name are resolved before anything is written, and an output
that would land on an input file is refused. A file that cannot be read, processed or written is
reported (naming it) and skipped; the others are processed, and detections.csv is written for the
images done, even when a later step fails.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from torch import nn

from nairstd.compiling import compile_model, should_compile
from nairstd.data.images import IMAGE_EXTENSIONS, DataError, read_image
from nairstd.data.preprocess import checkpoint_preprocessing
from nairstd.grid import EIGHT_CONNECTED
from nairstd.io import InputFiles, save_png, write_text
from nairstd.isolation import structure_test, suppress_structure_ends
from nairstd.models.traits import unwrap
from nairstd.onnx_backend import BACKENDS, OnnxModel, ProbabilityModel, is_onnx_file
from nairstd.operating import (
    calibrated_tile,
    calibration_note,
    default_checkpoint,
    operating_point,
)
from nairstd.probability import (
    TILE,
    classical_probability,
    predict_probability,
)
from nairstd.train.checkpoint import load_model, resolve_device
from nairstd.zoo import classical_method

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


def detection_labels(prob: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    """(label map, count) of the detections at `threshold`: the 8-connected components of
    prob > threshold. The rule `predict` reports by; `calibrate` counts false targets by it
    (nairstd.calibrate.component_counts, checked equal in tests/test_calibrate.py)."""
    return ndimage.label(prob > threshold, structure=EIGHT_CONNECTED)


def detections(prob: np.ndarray, image_name: str, threshold: float = 0.5) -> list[dict]:
    """One row per 8-connected component of prob > threshold (centroid = mean row/col).

    Each object is measured inside its bounding box, so memory stays at one label map however
    large the image or the objects (whole-image index arrays would cost 16 bytes a pixel).
    """
    labels, n = detection_labels(prob, threshold)
    rows = []
    for i, box in enumerate(ndimage.find_objects(labels)):
        if box is None:
            continue
        inside = labels[box] == i + 1
        area = int(inside.sum())
        ys = inside.sum(axis=1)
        xs = inside.sum(axis=0)
        y = float((ys * np.arange(box[0].start, box[0].stop)).sum() / area)
        x = float((xs * np.arange(box[1].start, box[1].stop)).sum() / area)
        peak = float(np.max(prob[box], where=inside, initial=-np.inf))
        rows.append(
            {
                "image": image_name,
                "target_id": i + 1,
                "x": x,
                "y": y,
                "area": area,
                "peak_probability": peak,
            }
        )
    return rows


def to_uint8(prob: np.ndarray) -> np.ndarray:
    """Probability x 255 as uint8 (one full-size float temporary)."""
    scaled = prob * np.float32(255.0)
    np.round(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)


def prepare_output(output_dir: str | os.PathLike) -> Path:
    """The output folder, created if needed; one DataError naming it when it cannot be used."""
    out = Path(output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: the output path exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"{out}: cannot create the output folder ({err.strerror or err})") from err
    if not os.access(out, os.W_OK | os.X_OK):
        raise DataError(f"{out}: the output folder is not writable")
    return out


def plan_outputs(
    files: list[Path], out: Path
) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """(input, output PNG) pairs, and failures for inputs whose output would be unsafe: an output
    that is an input file (e.g. scene.tif -> scene.png beside an input scene.png) or that two
    inputs share (nairstd.io.InputFiles: a symlink or hard link to an input counts as that input).
    Decided for all inputs before anything is written."""
    inputs = InputFiles(files)
    plan: list[tuple[Path, Path]] = []
    failures: list[tuple[str, str]] = []
    owners: dict[Path, Path] = {}
    for file in files:
        target = out / f"{file.stem}.png"
        key = target.resolve()
        found = inputs.clash(target)
        if found is not None:
            what = "this input" if found == file else f"the input {found}"
            failures.append((str(file), f"{file}: its output {target} would overwrite {what}"))
        elif key in owners:
            failures.append(
                (str(file), f"{file}: same stem as {owners[key]}; its output {target} is taken")
            )
        else:
            owners[key] = file
            plan.append((file, target))
    return plan, failures


def _failure_message(file: Path, target: Path, err: BaseException) -> str:
    if isinstance(err, DataError):
        return str(err)
    if isinstance(err, OSError):
        where = err.filename or target
        return f"{file}: cannot write {where} ({err.strerror or err})"
    if isinstance(err, MemoryError):
        return f"{file}: out of memory (try --tile with a smaller size)"
    return f"{file}: {type(err).__name__}: {err}"


# Reading the next image and writing the previous one run in threads beside the model (PIL, zlib
# and numpy release the GIL), so a free core hides the file IO. Up to this many pixels an image
# overlaps its neighbours; larger ones (tiled, memory-bounded) run one step at a time, so at most
# one large image is held at once, as before.
OVERLAP_MAX_PIXELS = 4096 * 4096
# zlib level of the probability PNGs: level 1 writes the same pixels 2x faster than PIL's default
# (6) for a noisy map (measured 28 vs 54 ms at 640x512), for files ~10 % larger.
PNG_COMPRESS_LEVEL = 1


def write_outputs(prob: np.ndarray, file: Path, target: Path, threshold: float = 0.5) -> list[dict]:
    """Write the probability PNG of `file` to `target`; its detections rows at `threshold`."""
    save_png(to_uint8(prob), target, compress_level=PNG_COMPRESS_LEVEL)
    return detections(prob, file.name, threshold)


def run_overlapped(
    plan: list[tuple[Path, Path]],
    infer: Callable[[np.ndarray], np.ndarray],
    done: Callable[[Path, Path, list[dict]], None],
    failed: Callable[[Path, Path, BaseException], None],
    threshold: float = 0.5,
) -> None:
    """For each (input, output) of `plan`, in order: read, `infer` (this thread), write outputs
    (detections at `threshold`),
    then `done(file, target, rows)` or `failed(file, target, error)`.

    The read of image i+1 and the writes of image i-1 overlap the inference of image i (one
    reader and one writer thread); callbacks run in this thread, in input order.
    """
    with (
        ThreadPoolExecutor(1, "nairstd-read") as reader,
        ThreadPoolExecutor(1, "nairstd-write") as writer,
    ):
        writing: tuple[Path, Path, Future] | None = None

        def finish_write() -> None:
            nonlocal writing
            if writing is not None:
                file, target, future = writing
                writing = None
                try:
                    found = future.result()
                except Exception as err:  # per image: name it, skip it, go on
                    failed(file, target, err)
                else:
                    done(file, target, found)

        reading = reader.submit(read_image, plan[0][0]) if plan else None
        for i, (file, target) in enumerate(plan):
            error: BaseException | None = None
            prob = None
            future, reading = reading, None
            try:
                image = future.result()
                if image.size > OVERLAP_MAX_PIXELS:
                    finish_write()  # a large image runs alone: memory stays bounded
                elif i + 1 < len(plan):
                    reading = reader.submit(read_image, plan[i + 1][0])
                prob = infer(image)
                del image
            except Exception as err:  # per image: name it, skip it, go on
                error = err
            finish_write()  # the previous image's callback first: input order
            if error is None:
                writing = (
                    file,
                    target,
                    writer.submit(write_outputs, prob, file, target, threshold),
                )
                if prob.size > OVERLAP_MAX_PIXELS:
                    finish_write()
            else:
                failed(file, target, error)
            del prob
            if reading is None and i + 1 < len(plan):
                reading = reader.submit(read_image, plan[i + 1][0])
        finish_write()


def choose_backend(checkpoint: object, backend: str = "auto", classical: bool = False) -> str:
    """The backend that runs `checkpoint` under `--backend`: "torch" or "onnxruntime" (auto:
    onnxruntime for an exported model, else torch); a combination that cannot run is a
    ValueError."""
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r}: one of {', '.join(BACKENDS)}")
    exported = isinstance(checkpoint, ProbabilityModel) or is_onnx_file(checkpoint)
    if classical and backend == "onnxruntime":
        raise ValueError(f"--backend onnxruntime runs networks; {checkpoint} is a classical method")
    if exported and backend == "torch":
        raise ValueError(f"{checkpoint}: an ONNX file runs on --backend onnxruntime (or auto)")
    if backend == "auto":
        return "onnxruntime" if exported else "torch"
    return backend


def onnx_model(
    checkpoint: str | os.PathLike | nn.Module | ProbabilityModel | None,
    device: str | torch.device | None = "auto",
    log: Callable[[str], None] | None = None,
) -> tuple[ProbabilityModel, dict]:
    """(model on onnxruntime, checkpoint-like dict) from an .onnx file, or from a checkpoint /
    torch model, exported in memory one fixed-size graph per input size (nairstd.onnx_sized)."""
    from nairstd.onnx_sized import SizedOnnxModel

    if isinstance(checkpoint, ProbabilityModel):
        return checkpoint, checkpoint.info
    if is_onnx_file(checkpoint):
        model = OnnxModel.load(checkpoint, device)
        return model, model.info
    if isinstance(checkpoint, nn.Module):
        net, ckpt = unwrap(checkpoint), {}
    else:
        net, ckpt = load_model(checkpoint if checkpoint is not None else default_checkpoint())
    model = SizedOnnxModel(net, ckpt, device, log=log)
    return model, model.info


def predict_files(
    checkpoint: str | os.PathLike | nn.Module | ProbabilityModel | None,
    inputs: Iterable[str | os.PathLike],
    output_dir: str | os.PathLike,
    protocol: str | None = None,
    device: str | torch.device | None = "auto",
    size: int = 256,
    log: Callable[[str], None] | None = None,
    tile: int | None = None,
    compile_mode: str = "off",
    threshold: float | None = None,
    backend: str = "auto",
    reject_structures: str = "auto",
) -> PredictResult:
    """Predict every input image; write `<stem>.png` maps and `detections.csv` to output_dir.

    `checkpoint` is a checkpoint file, a run folder, a model, or the name of a classical method
    (nairstd.baselines.CLASSICAL, e.g. "pstnn"). Failures are collected in the result (and
    logged) and never stop the other images; detections.csv always holds the images done.
    tile: window side for large images under native (None: the one a calibrated checkpoint was
    calibrated with, else TILE; 0: never tile).
    An unusable model or output folder raises DataError before anything is written.
    compile_mode (auto, on, off): torch.compile the model, see nairstd.compiling.
    checkpoint None: the shipped na_irstd (nairstd/pretrained). protocol / threshold None: what
    the checkpoint records (nairstd.operating), else native / 0.5.
    backend: auto, torch or onnxruntime (`choose_backend`); onnxruntime takes `device` as its
    execution provider and never compiles (`compile_mode` "on" is refused).
    reject_structures (auto, on, off): drop detections the isolation test calls the bright end
    of a larger structure (nairstd.isolation; their pixels are 0 in the written map); auto: as
    the checkpoint records (calibrate --reject-structures on), else off.
    """
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    classical = classical_method(checkpoint) if isinstance(checkpoint, str) else None
    backend = choose_backend(checkpoint, backend, classical is not None)
    if backend == "onnxruntime" and compile_mode == "on":
        raise ValueError("--compile on is for the torch backend (onnxruntime optimises by itself)")
    ckpt: dict | None = None
    model: nn.Module | ProbabilityModel | None
    if backend == "onnxruntime":
        model, ckpt = onnx_model(checkpoint, device, say)
        device = torch.device("cpu")  # frames reach onnxruntime as numpy arrays
    elif classical is not None:
        device = resolve_device(device)
        model = None  # a training-free method: maps come from `classical(image)`
    elif isinstance(checkpoint, nn.Module):
        device = resolve_device(device)
        model = unwrap(checkpoint).to(device).eval()
    else:
        device = resolve_device(device)
        model, ckpt = load_model(checkpoint or default_checkpoint(), device)
    # The windows the threshold was calibrated with, so the maps it is applied to are the same.
    if tile is None:
        tile = calibrated_tile(ckpt)
        tile = TILE if tile is None else tile  # (0, never tile, is kept)
    if isinstance(model, OnnxModel) and model.input_hw is not None and tile:
        tile = max(tile, *model.input_hw)  # whole frames of the size it was exported for
    prep = checkpoint_preprocessing(ckpt)  # e.g. imported peer weights: /255 at 256x256
    size = int(prep["input_size"] or size)
    note = calibration_note(ckpt, protocol, threshold)
    protocol, threshold = operating_point(ckpt, protocol, threshold)
    structures = structure_test(reject_structures, ckpt)
    out = prepare_output(output_dir)
    files, failures = collect_inputs(inputs)
    plan, unsafe = plan_outputs(files, out)
    InputFiles(files).refuse(out / "detections.csv")
    if note:
        say(note)
    if structures is not None:
        source = "recorded in the checkpoint" if (ckpt or {}).get("reject_structures") else "on"
        say(f"rejecting structure ends: isolation test {structures.describe()} ({source})")
    compilable = model is not None and backend == "torch"
    if compilable and should_compile(compile_mode, len(plan), device):
        say(f"compiling the model for {len(plan)} images (--compile {compile_mode})")
        model = compile_model(model)
    result = PredictResult(out, failures=failures + unsafe)
    for _, message in result.failures:
        say(f"error: {message} (skipped)")
    rows: list[dict] = []
    start = time.perf_counter()

    def infer(image: np.ndarray) -> np.ndarray:
        if classical is not None:
            prob = classical_probability(classical, image, protocol, size)
        else:
            prob = predict_probability(
                model, image, protocol, size, device, tile, preprocessing=prep
            )
        if structures is not None:
            prob, _ = suppress_structure_ends(image, prob, threshold, structures)
        return prob

    def done(file: Path, target: Path, found: list[dict]) -> None:
        result.written.append(target)
        rows.extend(found)

    def failed(file: Path, target: Path, err: BaseException) -> None:
        message = _failure_message(file, target, err)
        result.failures.append((str(file), message))
        say(f"error: {message} (skipped)")

    try:
        run_overlapped(plan, infer, done, failed, threshold)
    finally:
        result.seconds = time.perf_counter() - start
        result.detections = pd.DataFrame(rows, columns=DETECTION_COLUMNS)
        csv = out / "detections.csv"
        try:
            write_text(csv, result.detections.to_csv(index=False))
        except OSError as err:
            message = f"{csv}: cannot write ({err.strerror or err})"
            result.failures.append((str(csv), message))
            say(f"error: {message}")
    return result
