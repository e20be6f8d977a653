"""Set a checkpoint's operating threshold on the user's own target-free frames.

    python -m nairstd calibrate --background empty_frames/ --out mine.pt [--max-false-per-frame 0.2]
    python -m nairstd predict --checkpoint mine.pt --input frames/ --output out/

Why: the shipped threshold was chosen on SIRST validation frames, and a model's false alarms
depend on the sensor and the scene (the shipped na_irstd raised 0.28 false targets per
target-free SIRST frame at native size but 0.77-0.79 on the same frames enlarged; README, "Shipped
models"). Frames without targets from the user's own sensor need no labels, and on them every
detection is a false target, so they are enough to set the threshold for a false-alarm budget.

How: the model runs once over every frame, as `predict` runs it (nairstd.probability: protocol,
tiling, the checkpoint's preprocessing); each map is reduced at once to its number of detections
at every threshold of CALIBRATION_THRESHOLDS (`component_counts`: the rule `predict` reports by,
8-connected components of probability > threshold, nairstd.predict.detection_labels; the tests
check the counts equal predict's rows), so no map is kept. The threshold is the LOWEST one whose
false targets per frame stay within the budget: the most sensitive operating point the budget
allows. The output is a copy of the checkpoint with
that `threshold`, the `protocol` it was measured under and the evidence under `calibration`
(frames, their names and hash, the curve, the budget, the date, the source's SHA-256, held-out
frames, the frames with the most false targets); `predict` uses it and says so.

False alarms concentrate in a few frames (measured: one of 85 SIRST val frames enlarged to
640x512 raised 18 of the 49 false targets the shipped model made at 0.37), so a threshold set on
a few frames may not hold on others: `--holdout` checks it on frames kept aside and warns when they
exceed the budget.

When no threshold meets the budget, nothing is written (an error says the fewest false targets
reached and where): a checkpoint that claims an operating point it does not have would be worse
than none. When the budget is met only where the checkpoint's recorded validation Pd is under
PD_WARN, a warning says so: few false alarms bought by missing most targets.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from nairstd.data.images import DataError, read_image
from nairstd.data.preprocess import checkpoint_preprocessing
from nairstd.grid import EIGHT_CONNECTED
from nairstd.io import InputFiles, save_torch, sha256_file
from nairstd.isolation import IsolationTest, structure_test
from nairstd.operating import PRETRAINED, default_checkpoint, operating_point, recorded_protocol
from nairstd.predict import collect_inputs
from nairstd.probability import TILE, predict_probability
from nairstd.train.checkpoint import load_model, resolve_device
from nairstd.zoo import classical_method

# 0.05, 0.06, ..., 0.99: finer than the 0.05 steps of the validation sweeps, since the budget is
# the user's and a step of 0.05 can move false targets per frame by a lot near 1.
CALIBRATION_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 + 0.01 * i, 2) for i in range(95))
DEFAULT_BUDGET = 0.2  # false targets per target-free frame (the shipped rule's goal, issue 12)
PD_WARN = 80.0  # warn when the chosen threshold's recorded validation Pd is under this (%)
# A run's last.pt carries the resume state; a deployment copy needs only the weights.
RESUME_KEYS = ("optimizer", "scheduler", "scaler", "state", "rng", "world_size")
RULE = "lowest threshold in 0.05..0.99 (steps of 0.01) with false targets per frame <= budget"


def component_counts(
    prob: np.ndarray,
    thresholds: Sequence[float],
    image: np.ndarray | None = None,
    structures: IsolationTest | None = None,
) -> list[int]:
    """Number of detections (nairstd.predict.detection_labels) of `prob` at each of the ascending
    `thresholds`, in one pass. With `structures` (and the input `image`), a detection the
    isolation test calls a structure end is not counted, as predict --reject-structures drops it
    (nairstd.isolation); it is still searched for detections at higher thresholds.

    A component above a higher threshold lies inside exactly one component above a lower one, so
    each threshold labels only inside the previous threshold's components (their boxes, masked to
    the component); a component is dropped once the threshold passes its peak. A few false
    targets cost a few tiny labellings per threshold instead of a full-frame one each.
    """
    if any(b <= a for a, b in zip(thresholds, thresholds[1:])):
        raise ValueError(f"thresholds must be ascending, got {list(thresholds)}")
    if structures is not None:
        if image is None or np.shape(image) != prob.shape:
            raise ValueError("the isolation test needs the input image, of the map's size")
        image = np.asarray(image, np.float32)
    h, w = prob.shape
    # (rows, cols, the component's pixels inside that box or None: the whole box)
    regions: list[tuple[slice, slice, np.ndarray | None]] = [(slice(0, h), slice(0, w), None)]
    counts = []
    for t in thresholds:
        n = 0
        found: list[tuple[slice, slice, np.ndarray | None]] = []
        for rows, cols, inside in regions:
            above = prob[rows, cols] > t
            if inside is not None:
                above &= inside
            labels, k = ndimage.label(above, structure=EIGHT_CONNECTED)
            n += k
            for j, box in enumerate(ndimage.find_objects(labels), start=1):
                if box is None:
                    continue
                sub_rows = slice(rows.start + box[0].start, rows.start + box[0].stop)
                sub_cols = slice(cols.start + box[1].start, cols.start + box[1].stop)
                found.append((sub_rows, sub_cols, labels[box] == j))
                if structures is not None and structures.is_structure_end(
                    image, sub_rows, sub_cols, found[-1][2]
                ):
                    n -= 1
        counts.append(n)
        regions = found
    return counts


def split_holdout(n: int, fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """(calibration indices, held-out indices) of n frames: round(fraction * n) held out (at
    least one when fraction > 0), drawn with `seed`; both in input order."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"--holdout must lie in 0..1 (excluded), got {fraction}")
    n_hold = round(fraction * n)
    if fraction > 0 and n_hold == 0:
        n_hold = 1
    if n - n_hold < 1:
        raise ValueError(f"--holdout {fraction} of {n} frame(s) leaves none to calibrate on")
    held = set(np.random.default_rng(seed).permutation(n)[:n_hold].tolist())
    return [i for i in range(n) if i not in held], sorted(held)


def lowest_within(curve: Sequence[float], budget: float) -> int | None:
    """Index of the lowest threshold whose false targets per frame are <= budget (None: none)."""
    for i, value in enumerate(curve):
        if value <= budget + 1e-12:
            return i
    return None


def _shipped_sweep(ckpt: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The validation sweep in a shipped model's JSON summary (exports before the checkpoint
    itself carried it: nairstd.shipped)."""
    path = Path(str(ckpt.get("path", "")))
    if not path.name or path.resolve().parent != PRETRAINED.resolve():
        return None
    summary = path.with_suffix(".json")
    try:
        return json.loads(summary.read_text()).get("val_sweep")
    except (OSError, ValueError):
        return None


def recorded_val_pd(ckpt: dict[str, Any]) -> list[tuple[float, float]]:
    """(threshold, validation Pd %) points a checkpoint records, by threshold: its validation
    sweep (`metrics.val_sweep`, written by nairstd.shipped; the shipped models' JSON summary for
    older exports) or else its Pd at its operating threshold (`metrics.val_at_threshold`) and the
    training loop's at 0.5 (`metrics.val`). Empty when it records none (e.g. imported weights)."""
    metrics = ckpt.get("metrics") or {}
    points: dict[float, float] = {}
    sweep = metrics.get("val_sweep") or _shipped_sweep(ckpt)
    for row in sweep or []:
        if _finite(row.get("Pd")):
            points[float(row["threshold"])] = float(row["Pd"])
    if not points:
        at = metrics.get("val_at_threshold") or {}
        where = at.get("threshold", ckpt.get("threshold"))
        if _finite(at.get("Pd")) and where is not None:
            points[float(where)] = float(at["Pd"])
        val = metrics.get("val") or {}
        if _finite(val.get("Pd")):
            points.setdefault(0.5, float(val["Pd"]))
    return sorted(points.items())


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def val_pd_at(points: Sequence[tuple[float, float]], threshold: float) -> dict[str, Any] | None:
    """The validation Pd at `threshold` from recorded points: recorded there, interpolated
    linearly between its neighbours, or (above the highest) at most the Pd at the highest one
    (Pd falls as the threshold rises); None when no point lies at or below it."""
    for t, pd in points:
        if abs(t - threshold) < 1e-9:
            return {"Pd": pd, "how": "recorded"}
    lower = [p for p in points if p[0] < threshold]
    upper = [p for p in points if p[0] > threshold]
    if lower and upper:
        (t0, p0), (t1, p1) = lower[-1], upper[0]
        pd = p0 + (p1 - p0) * (threshold - t0) / (t1 - t0)
        return {"Pd": pd, "how": f"interpolated between {t0} and {t1}"}
    if lower:
        return {"Pd": lower[-1][1], "how": f"at most: recorded at {lower[-1][0]}"}
    return None


def frame_counts(
    infer: Callable[[np.ndarray], np.ndarray],
    files: Sequence[Path],
    thresholds: Sequence[float] = CALIBRATION_THRESHOLDS,
    log: Callable[[str], None] | None = None,
    structures: IsolationTest | None = None,
) -> np.ndarray:
    """(frames, thresholds) detections per frame: each file read, run once, counted, dropped
    (`structures`: structure ends not counted, nairstd.isolation)."""
    counts = np.zeros((len(files), len(thresholds)), np.int64)
    step = max(1, len(files) // 10)
    for i, file in enumerate(files):
        image = read_image(file)
        counts[i] = component_counts(infer(image), thresholds, image, structures)
        if log and ((i + 1) % step == 0 or i + 1 == len(files)):
            log(f"calibrate: {i + 1}/{len(files)} frames")
    return counts


WORST_FRAMES = 5  # frames named in the evidence as raising the most false targets


def worst_frames(counts: np.ndarray, names: Sequence[str]) -> list[dict[str, Any]]:
    """The frames (calibration and held out) with the most false targets at the chosen
    threshold, most first: false alarms concentrate in a few frames (measured on SIRST frames:
    README), and a frame that holds a target after all shows up here."""
    order = sorted(range(len(names)), key=lambda i: (-int(counts[i]), i))[:WORST_FRAMES]
    return [{"frame": names[i], "false_targets": int(counts[i])} for i in order if counts[i]]


def names_sha256(names: Iterable[str]) -> str:
    """SHA-256 of the frame names, one a line (the order they were read in)."""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def _curve(counts: np.ndarray, thresholds: Sequence[float]) -> list[dict[str, float]]:
    per_frame = counts.mean(axis=0) if len(counts) else np.zeros(len(thresholds))
    return [
        {"threshold": float(t), "false_per_frame": float(v)} for t, v in zip(thresholds, per_frame)
    ]


@dataclass
class CalibrationResult:
    out: Path
    threshold: float
    calibration: dict[str, Any]  # what the checkpoint records under `calibration`
    warnings: list[str] = field(default_factory=list)  # one `warning:` line each
    notes: list[str] = field(default_factory=list)  # plain lines for the user


def check_inputs(
    checkpoint: str | os.PathLike | None,
    background: Iterable[str | os.PathLike],
    max_false_per_frame: float,
) -> tuple[Path, list[Path]]:
    """(the checkpoint to calibrate, the frame files) after the checks every calibration makes:
    a budget >= 0, a network (not a classical method), frames that exist."""
    if not (math.isfinite(max_false_per_frame) and max_false_per_frame >= 0):
        raise ValueError(f"--max-false-per-frame must be a number >= 0, got {max_false_per_frame}")
    if isinstance(checkpoint, str) and classical_method(checkpoint) is not None:
        raise DataError(
            f"{checkpoint}: a classical method has no checkpoint to write a threshold into; "
            "calibrate a network checkpoint"
        )
    source = Path(checkpoint) if checkpoint is not None else default_checkpoint()
    files, failures = collect_inputs(background)
    if failures:
        raise DataError(failures[0][1])
    return source, files


def choose_threshold(
    values: Sequence[float], thresholds: Sequence[float], budget: float, n_frames: int
) -> int:
    """Index of the lowest threshold within the budget; a ValueError (nothing is written) when
    none is, giving the fewest false targets reached and where."""
    best = lowest_within(values, budget)
    if best is None:
        fewest = int(np.argmin(values))
        raise ValueError(
            f"no threshold in {thresholds[0]}..{thresholds[-1]} keeps the false targets per frame "
            f"within {budget} on these {n_frames} frames (fewest: "
            f"{values[fewest]:.3f}, from threshold {thresholds[fewest]}); nothing written. "
            "Check that the frames hold no target, or raise --max-false-per-frame"
        )
    return best


def calibration_record(
    ckpt: dict[str, Any],
    files: Sequence[Path],
    calib: Sequence[int],
    curve: list[dict[str, float]],
    best: int,
    max_false_per_frame: float,
    protocol: str,
    tile: int,
) -> dict[str, Any]:
    """The evidence a calibrated checkpoint carries under `calibration` (its `holdout`,
    `val_pd_at_threshold` and `most_false_targets` are filled in by the caller)."""
    source_file = Path(ckpt["path"])
    names = [files[i].name for i in calib]
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "frames": len(calib),
        "frame_names": names,
        "frames_sha256": names_sha256(names),
        "max_false_per_frame": float(max_false_per_frame),
        "threshold": curve[best]["threshold"],
        "false_per_frame": curve[best]["false_per_frame"],
        "rule": RULE,
        "curve": curve,
        "protocol": protocol,
        "tile": tile,
        "source_checkpoint": str(source_file),
        "source_sha256": sha256_file(source_file),
        "source_threshold": ckpt.get("threshold"),
        "source_protocol": recorded_protocol(ckpt),
        "val_pd_at_threshold": None,
        "holdout": None,
    }


def holdout_check(
    result: CalibrationResult,
    files: Sequence[Path],
    held: Sequence[int],
    counts: np.ndarray,
    best: int,
    holdout: float,
    seed: int,
    thresholds: Sequence[float],
) -> None:
    """Record the held-out frames' curve in `result.calibration["holdout"]` (counts: every
    frame's, by threshold) and warn when they exceed the budget at the chosen threshold."""
    calibration, threshold = result.calibration, result.threshold
    budget = calibration["max_false_per_frame"]
    held_curve = _curve(counts[held], thresholds)
    calibration["holdout"] = {
        "fraction": holdout,
        "seed": seed,
        "frames": len(held),
        "frame_names": [files[i].name for i in held],
        "false_per_frame": held_curve[best]["false_per_frame"],
        "curve": held_curve,
    }
    if held_curve[best]["false_per_frame"] > budget + 1e-12:
        result.warnings.append(
            f"the {len(held)} held-out frames raise {held_curve[best]['false_per_frame']:.3f} "
            f"false targets per frame at threshold {threshold}, over the budget of "
            f"{budget}: the calibration frames do not represent them (see the "
            "frames with the most false targets); calibrate on more frames"
        )


def calibrate(
    checkpoint: str | os.PathLike | None,
    background: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    max_false_per_frame: float = DEFAULT_BUDGET,
    protocol: str | None = None,
    tile: int | None = None,
    holdout: float = 0.0,
    seed: int = 0,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
    thresholds: Sequence[float] = CALIBRATION_THRESHOLDS,
    reject_structures: str = "auto",
) -> CalibrationResult:
    """Calibrate `checkpoint` (None: the shipped na_irstd) on the target-free frames of
    `background` (files and folders) and write the calibrated copy to `out`; see the module.
    protocol None: the checkpoint's (as `predict`); tile None: predict's TILE.
    reject_structures (auto, on, off): count detections as predict will report them with the
    isolation test (nairstd.isolation) on or off; auto: as the checkpoint records. The copy
    records the choice, so predict applies the same test the threshold was set with."""
    source, files = check_inputs(checkpoint, background, max_false_per_frame)
    calib, held = split_holdout(len(files), holdout, seed)
    device = resolve_device(device)
    model, ckpt = load_model(source, device)
    source_file = Path(ckpt["path"])
    InputFiles([*files, source_file]).refuse(Path(out).expanduser())
    protocol, _ = operating_point(ckpt, protocol, None)
    tile = TILE if tile is None else tile
    prep = checkpoint_preprocessing(ckpt)
    size = int(prep["input_size"] or 256)

    def infer(image: np.ndarray) -> np.ndarray:
        return predict_probability(model, image, protocol, size, device, tile, preprocessing=prep)

    structures = structure_test(reject_structures, ckpt)
    if structures is not None and log:
        log(f"calibrate: rejecting structure ends ({structures.describe()})")
    counts = frame_counts(infer, files, thresholds, log, structures)
    curve = _curve(counts[calib], thresholds)
    values = [row["false_per_frame"] for row in curve]
    best = choose_threshold(values, thresholds, max_false_per_frame, len(calib))
    threshold = float(thresholds[best])
    points = recorded_val_pd(ckpt)
    pd = val_pd_at(points, threshold)
    calibration = calibration_record(
        ckpt, files, calib, curve, best, max_false_per_frame, protocol, tile
    )
    calibration["val_pd_at_threshold"] = pd
    calibration["reject_structures"] = structures.to_dict() if structures else None
    result = CalibrationResult(Path(out), threshold, calibration)
    if held:
        holdout_check(result, files, held, counts, best, holdout, seed, thresholds)
    calibration["most_false_targets"] = worst_frames(counts[:, best], [f.name for f in files])
    if pd is not None and pd["Pd"] < PD_WARN:
        result.warnings.append(
            f"the budget of {max_false_per_frame} false targets per frame is met only from "
            f"threshold {threshold}, where the checkpoint's recorded validation Pd is "
            f"{pd['Pd']:.1f} % ({pd['how']}; < {PD_WARN:.0f} %): it will miss many targets there"
        )
    elif pd is None:
        result.notes.append(
            f"the checkpoint records no validation Pd at or below threshold {threshold}: check "
            "its Pd there on labelled frames (e.g. python -m nairstd eval)"
        )
    if structures is not None and ckpt.get("reject_structures") != structures.to_dict():
        result.notes.append(
            "the checkpoint's recorded validation Pd was measured without this isolation test; "
            "on SIRST val the shipped na_irstd lost no target to it (nairstd.isolation)"
        )
    _write_copy(ckpt, points, threshold, protocol, calibration, Path(out).expanduser(), structures)
    return result


def _write_copy(
    ckpt: dict[str, Any],
    points: list[tuple[float, float]],
    threshold: float,
    protocol: str,
    calibration: dict[str, Any],
    out: Path,
    structures: IsolationTest | None = None,
) -> None:
    """The calibrated copy: the same weights and records, the new operating point, the evidence.
    The validation records keep saying which threshold they were measured at."""
    copy = {k: v for k, v in ckpt.items() if k not in RESUME_KEYS and k != "path"}
    metrics = dict(copy.get("metrics") or {})
    at = metrics.get("val_at_threshold")
    if isinstance(at, dict) and "threshold" not in at and ckpt.get("threshold") is not None:
        metrics["val_at_threshold"] = {**at, "threshold": ckpt["threshold"]}
    if points and "val_sweep" not in metrics and _shipped_sweep(ckpt):
        metrics["val_sweep"] = _shipped_sweep(ckpt)  # the copy lives outside nairstd/pretrained
    copy["metrics"] = metrics
    copy.update(threshold=threshold, protocol=protocol, calibration=calibration)
    copy["reject_structures"] = structures.to_dict() if structures else None
    save_torch(copy, out)
