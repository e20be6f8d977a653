"""`calibrate --finetune`: a short hard-negative fine-tune on the user's target-free frames, with
labelled targets replayed so Pd holds, checked on frames kept aside (issue 23).

    python -m nairstd calibrate --background empty_frames/ --out mine.pt --finetune \\
        [--finetune-steps 200] [--replay SIRST] [--holdout 0.25]

Why: calibration alone can only raise the threshold, and on clutter unlike SIRST the false targets
are confident (median peak 0.84 on users' frames, README "A proxy that looks like real clutter"),
so a budget met by the threshold alone costs Pd. Frames without targets need no labels, and every
confident detection on them is a false target the model can be taught to drop.

How:
1. The frames are split (`split_holdout`, seeded) into fine-tune frames and held-out frames; the
   held-out part is mandatory (default a quarter): the fine-tuned model is calibrated on the very
   frames it was tuned on, so only the held-out frames say how it does on others.
2. The model runs over every frame as `predict` runs it (nairstd.probability). On the fine-tune
   frames, the false targets above the checkpoint's own threshold (`predict`'s detections: their
   centroids) each give a training crop centred on them (the model's training crop size, clipped
   to the frame, padded when the frame is smaller), at most HARD_PER_FRAME per frame, the most
   confident first; RANDOM_PER_FRAME random crops per frame join them. Their masks are all zero.
   The crops are cut from the network's input as `predict` builds it (the whole frame
   standardised, or resized first under resize256), so the model is taught on what it saw.
3. Each step's batch is half such negatives (flipped / transposed at random) and half crops of the
   replay dataset's TRAIN split (SIRST by default) with their masks, always centred on a target
   and with the model's own scale augmentation, so the model keeps detecting targets.
4. The whole model trains under its own training loss (the stage policy of its recorded config:
   nairstd.train.stages) at LR_SCALE of its training learning rates, constant.
5. The threshold is then calibrated as `calibrate` does, on the fine-tune frames; the held-out
   frames give false targets per frame before vs after at that threshold, and the replay
   dataset's VAL split (never test) Pd / IoU before vs after, measured as `predict` runs. A
   warning when the val Pd falls by more than PD_DROP_WARN points or below PD_WARN; the
   checkpoint is written anyway (the evidence travels in it), unless no threshold meets the
   budget.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nairstd.calibrate import (
    CALIBRATION_THRESHOLDS,
    DEFAULT_BUDGET,
    PD_WARN,
    RESUME_KEYS,
    CalibrationResult,
    _curve,
    calibration_record,
    check_inputs,
    choose_threshold,
    component_counts,
    holdout_check,
    lowest_within,
    split_holdout,
    worst_frames,
)
from nairstd.data.dataset import AugmentConfig, IRSTDDataset
from nairstd.data.images import DataError, read_image
from nairstd.data.index import DatasetIndex, find_dataset
from nairstd.data.preprocess import checkpoint_preprocessing, normalize_image, resize_input
from nairstd.io import InputFiles, save_torch
from nairstd.models.traits import has_native_branch
from nairstd.operating import operating_point
from nairstd.predict import detections
from nairstd.probability import TILE, predict_probability
from nairstd.protocols import RESIZE256
from nairstd.sweep import DEFAULT_THRESHOLDS, sweep
from nairstd.train.checkpoint import load_model, model_checkpoint, resolve_device
from nairstd.train.config import TrainConfig
from nairstd.train.recipes import make_optimizer, recipe_for
from nairstd.train.stages import policy_for

DEFAULT_STEPS = 200
DEFAULT_HOLDOUT = 0.25  # with --finetune a held-out part is mandatory
DEFAULT_REPLAY = "SIRST"
# A tenth of the rates the model was trained at: the fine-tune sees a few hundred crops of a few
# frames, and Adam moves every weight by about its lr per step, so 200 steps at the training rate
# could undo much of what the replay dataset taught; a tenth moves the weights a little around the
# trained solution (the replayed targets are the other guard).
LR_SCALE = 0.1
HARD_PER_FRAME = 8  # crops on false targets per fine-tune frame (the most confident first)
RANDOM_PER_FRAME = 2  # random crops per fine-tune frame: the rest of the user's scene
PD_DROP_WARN = 3.0  # warn when the replay val Pd falls by more than this many points
DEFAULT_CROP = 256  # a checkpoint trained on whole native frames records no crop size


@dataclass
class NegativeCrop:
    """A training crop of a fine-tune frame (its mask is all zero)."""

    image: np.ndarray  # (side, side) float32 network input
    frame: str  # the frame's file name
    window: tuple[int, int, int, int]  # (top, left, bottom, right) in the network view
    target: dict[str, Any] | None  # the false target (predict's detection row); None: random


def training_config(ckpt: dict[str, Any], native: bool) -> tuple[TrainConfig, str]:
    """(the config the checkpoint was trained with, where it came from). A checkpoint recording
    none (imported weights) gets the defaults of its model: Stage 2's loss (L_seg, scorer frozen)
    for a model with a native branch (`native`), the one-stage loss for any other."""
    path = ckpt.get("path", "checkpoint")
    recorded = ckpt.get("config")
    if isinstance(recorded, dict):
        try:
            cfg = TrainConfig.from_dict(recorded)
        except (TypeError, ValueError) as err:
            raise DataError(f"{path}: its training config is not usable ({err})") from err
        source = "the checkpoint's training config"
    else:
        cfg = TrainConfig(model=str(ckpt["model"]), stage="2" if native else "one")
        source = "defaults (the checkpoint records no training config)"
    if cfg.stage == "1":
        raise DataError(
            f"{path}: a Stage-1 checkpoint trains only the scorer and predicts nothing worth "
            "calibrating; fine-tune a Stage-2 or one-stage checkpoint"
        )
    return cfg, source


def crop_side(cfg: TrainConfig, protocol: str, size: int) -> int:
    """The side of the training crops: the model's training crop; under resize256 at most the
    resized frame's side (the whole view when the model trained on whole images)."""
    if protocol == RESIZE256:
        return min(cfg.crop_size or size, size)
    return cfg.crop_size or DEFAULT_CROP


def network_view(image: np.ndarray, protocol: str, size: int, prep: dict[str, Any]) -> np.ndarray:
    """The network's input for a whole frame as `predict` builds it (resize256: resized first;
    then normalised with the whole frame's statistics)."""
    if protocol == RESIZE256:
        image = resize_input(image, (size, size), prep["resize"])
    return normalize_image(image, prep["normalize"])


def crop_window(cy: int, cx: int, side: int, h: int, w: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the side x side window centred on (cy, cx) (the centre at
    row / column side // 2), shifted inside an (h, w) frame and clipped to it when smaller."""
    top = int(np.clip(cy - side // 2, 0, max(0, h - side)))
    left = int(np.clip(cx - side // 2, 0, max(0, w - side)))
    return top, left, min(h, top + side), min(w, left + side)


def cut(view: np.ndarray, window: tuple[int, int, int, int], side: int) -> np.ndarray:
    """The window's pixels, padded bottom / right to side x side with their median (a frame
    smaller than the crop; a standardised frame's median is its typical grey, not black)."""
    top, left, bottom, right = window
    crop = view[top:bottom, left:right]
    pad = ((0, side - crop.shape[0]), (0, side - crop.shape[1]))
    if pad[0][1] or pad[1][1]:
        crop = np.pad(crop, pad, constant_values=float(np.median(crop)))
    return np.ascontiguousarray(crop, dtype=np.float32)


def negative_crops(
    view: np.ndarray,
    prob: np.ndarray,
    threshold: float,
    side: int,
    name: str,
    rng: np.random.Generator,
    hard_per_frame: int = HARD_PER_FRAME,
    random_per_frame: int = RANDOM_PER_FRAME,
) -> list[NegativeCrop]:
    """Crops of one target-free frame: one centred on each false target (`predict`'s detections
    of `prob` at `threshold`, their centroids; the most confident `hard_per_frame`), then
    `random_per_frame` random ones. `prob` is at the frame's size; `view` is the network input
    (the frame's size under native, size x size under resize256): centroids are mapped to it."""
    h, w = view.shape
    sy, sx = h / prob.shape[0], w / prob.shape[1]
    rows = sorted(detections(prob, name, threshold), key=lambda r: -r["peak_probability"])
    crops = []
    for row in rows[:hard_per_frame]:
        # pixel centres: x in the frame -> (x + 0.5) * s - 0.5 in the view
        cy = int(round((row["y"] + 0.5) * sy - 0.5))
        cx = int(round((row["x"] + 0.5) * sx - 0.5))
        window = crop_window(cy, cx, side, h, w)
        crops.append(NegativeCrop(cut(view, window, side), name, window, row))
    for _ in range(random_per_frame):
        top = int(rng.integers(max(0, h - side) + 1))
        left = int(rng.integers(max(0, w - side) + 1))
        window = (top, left, min(h, top + side), min(w, left + side))
        crops.append(NegativeCrop(cut(view, window, side), name, window, None))
    return crops


class ReplayBatches:
    """Training crops of the replay dataset's train split with their masks: each centred on a
    target (somewhere inside the crop, as training places it), with the model's own scale
    augmentation and the flips; sample i of step t is a function of (seed, t, i)."""

    def __init__(
        self,
        index: DatasetIndex,
        protocol: str,
        size: int,
        side: int,
        cfg: TrainConfig,
        prep: dict[str, Any],
        seed: int,
    ) -> None:
        crop = None if protocol == RESIZE256 and side >= size else side
        augment = AugmentConfig(
            crop_size=crop,
            target_crop_p=1.0,  # replay is there to keep targets detected: always show one
            scale_range=(cfg.scale_min, cfg.scale_max),
            background_p=0.0,  # target-free samples come from the user's frames
            frame_stats=cfg.frame_stats,
        )
        self.dataset = IRSTDDataset(
            index,
            "train",
            protocol,
            train=True,
            augment=augment,
            size=size,
            seed=seed,
            normalize=prep["normalize"],
            resize=prep["resize"],
        )

    def __len__(self) -> int:
        return len(self.dataset)

    def samples(self, step: int, picks: Iterable[int]) -> list[dict[str, Any]]:
        """The samples `picks` (dataset positions) drawn for optimiser step `step`."""
        self.dataset.epoch = step  # augmentations differ per step, repeat per seed
        return [self.dataset[int(i)] for i in picks]


def _flipped(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flips and transposition (the training augmentation)."""
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if rng.random() < 0.5:
        image = image[::-1]
    if image.shape[0] == image.shape[1] and rng.random() < 0.5:
        image = image.T
    return np.ascontiguousarray(image)


def fine_tune(
    model: nn.Module,
    cfg: TrainConfig,
    negatives: Sequence[NegativeCrop],
    replay: ReplayBatches,
    steps: int,
    half: int,
    seed: int,
    device: torch.device,
    lr_scale: float = LR_SCALE,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train `model` in place for `steps` steps of `half` negatives + `half` replay crops under
    its own policy's loss and parameter groups at lr_scale x their rates; returns the record."""
    policy = policy_for(cfg)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    groups = policy.param_groups(model)  # sets requires_grad (a Stage 2 keeps its scorer frozen)
    names = [g.pop("name") for g in groups]
    optimizer = make_optimizer(recipe_for(cfg.model, cfg.optim), groups, cfg.weight_decay)
    for group in optimizer.param_groups:
        group["lr"] *= lr_scale
    model.train()
    every = max(1, steps // 10)
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(steps):
        picks = rng.integers(len(negatives), size=half)
        images = [torch.from_numpy(_flipped(negatives[i].image, rng))[None] for i in picks]
        masks = [torch.zeros_like(x) for x in images]
        for sample in replay.samples(step, rng.integers(len(replay), size=half)):
            images.append(sample["image"])
            masks.append(sample["mask"])
        x = torch.stack(images).to(device)
        y = torch.stack(masks).to(device)
        loss, _ = policy.losses(model, model, x, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite fine-tune loss at step {step + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if log and ((step + 1) % every == 0 or step + 1 == steps):
            recent = losses[-every:]
            log(
                f"finetune: step {step + 1}/{steps} loss {sum(recent) / len(recent):.4f} "
                f"({time.perf_counter() - start:.0f} s)"
            )
    model.eval()
    head = losses[: max(1, steps // 10)]
    tail = losses[-max(1, steps // 10) :]
    return {
        "steps": steps,
        "batch": {"negatives": half, "replay": half},
        "lr_scale": lr_scale,
        "lr": {name: g["lr"] for name, g in zip(names, optimizer.param_groups)},
        "optimizer": type(optimizer).__name__,
        "stage_loss": cfg.stage,
        "fa_weight": cfg.fa_weight,
        "loss_first_tenth": sum(head) / len(head),
        "loss_last_tenth": sum(tail) / len(tail),
        "seconds": time.perf_counter() - start,
    }


def _val_maps(
    infer: Callable[[np.ndarray], np.ndarray], index: DatasetIndex
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(probability map, mask) of every val image, as `predict` runs the model."""
    pairs = []
    for stem in index.split("val"):
        image, mask = index.load(stem)
        pairs.append((infer(image), mask))
    return pairs


def _by_threshold(rows: list[dict[str, Any]]) -> dict[float, dict[str, Any]]:
    return {round(r["threshold"], 4): r for r in rows}


def _val_row(rows: dict[float, dict[str, Any]], t: float | None) -> dict[str, Any] | None:
    if t is None:
        return None
    row = rows[round(t, 4)]
    return {k: row[k] for k in ("threshold", "Pd", "IoU", "Fa", "fa_per_frame")}


def find_replay(replay: str, data_root: str | None = None) -> DatasetIndex:
    """The replay dataset (a name in the data roots or a folder), with train and val images."""
    try:
        index = find_dataset(replay, data_root)
    except DataError as err:
        raise DataError(f"--replay: {err}") from err
    for split in ("train", "val"):
        if not index.split(split):
            raise DataError(f"{index.root}: --replay dataset has no {split} images")
    return index


def calibrate_finetune(
    checkpoint: str | os.PathLike | None,
    background: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    max_false_per_frame: float = DEFAULT_BUDGET,
    protocol: str | None = None,
    tile: int | None = None,
    holdout: float | None = None,
    seed: int = 0,
    device: str = "auto",
    steps: int = DEFAULT_STEPS,
    replay: str = DEFAULT_REPLAY,
    data_root: str | None = None,
    log: Callable[[str], None] | None = None,
    thresholds: Sequence[float] = CALIBRATION_THRESHOLDS,
    lr_scale: float = LR_SCALE,
) -> CalibrationResult:
    """Fine-tune `checkpoint` (None: the shipped na_irstd) on hard negatives of the target-free
    frames of `background` with `replay` replayed, calibrate it, check it on held-out frames and
    the replay val split, and write it to `out`; see the module. holdout None: DEFAULT_HOLDOUT."""
    say = log or (lambda line: None)
    source, files = check_inputs(checkpoint, background, max_false_per_frame)
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"--finetune-steps must be an integer >= 1, got {steps!r}")
    holdout = DEFAULT_HOLDOUT if holdout is None else holdout
    if not holdout > 0:
        raise ValueError(
            f"--finetune needs held-out frames to check the fine-tuned model on: --holdout must "
            f"be > 0 (default {DEFAULT_HOLDOUT}), got {holdout}"
        )
    if len(files) < 2:
        raise DataError(
            f"{files[0]}: --finetune needs at least 2 target-free frames (some to tune on, "
            f"some held out), got {len(files)}"
        )
    calib, held = split_holdout(len(files), holdout, seed)
    device = resolve_device(device)
    model, ckpt = load_model(source, device)
    cfg, cfg_source = training_config(ckpt, has_native_branch(model))
    index = find_replay(replay, data_root)
    source_file = Path(ckpt["path"])
    inputs = InputFiles([*files, source_file])
    inputs.add(p for p in Path(index.root).rglob("*") if p.is_file())
    inputs.refuse(Path(out).expanduser())
    protocol, hard_threshold = operating_point(ckpt, protocol, None)
    tile = TILE if tile is None else tile
    prep = checkpoint_preprocessing(ckpt)
    size = int(prep["input_size"] or 256)
    side = crop_side(cfg, protocol, size)
    half = max(1, cfg.batch_size // 2)

    def infer(image: np.ndarray) -> np.ndarray:
        return predict_probability(model, image, protocol, size, device, tile, preprocessing=prep)

    # 1. the source model over every frame: its counts, and the negatives of the fine-tune frames
    tuned = set(calib)
    rng = np.random.default_rng(seed)
    every = max(1, len(files) // 10)
    before = np.zeros((len(files), len(thresholds)), np.int64)
    negatives: list[NegativeCrop] = []
    for i, file in enumerate(files):
        image = read_image(file)
        prob = infer(image)
        before[i] = component_counts(prob, thresholds)
        if i in tuned:
            view = network_view(image, protocol, size, prep)
            negatives += negative_crops(view, prob, hard_threshold, side, file.name, rng)
        if (i + 1) % every == 0 or i + 1 == len(files):
            say(f"finetune: source model, {i + 1}/{len(files)} frames")
    hard = [c for c in negatives if c.target is not None]
    n_random = len(negatives) - len(hard)
    val_before = _val_maps(infer, index)

    # 2. the fine-tune
    say(
        f"finetune: {len(hard)} false targets above {hard_threshold} + {n_random} "
        f"random crops ({side} px) from {len(calib)} frames, {index.name} train replayed; "
        f"{steps} steps of {half} + {half}"
    )
    replayed = ReplayBatches(index, protocol, size, side, cfg, prep, seed)
    record = fine_tune(model, cfg, negatives, replayed, steps, half, seed, device, lr_scale, say)
    del negatives, replayed

    # 3. the fine-tuned model: calibrate on the fine-tune frames, check on the held-out ones
    after = np.zeros_like(before)
    for i, file in enumerate(files):
        after[i] = component_counts(infer(read_image(file)), thresholds)
        if (i + 1) % every == 0 or i + 1 == len(files):
            say(f"finetune: fine-tuned model, {i + 1}/{len(files)} frames")
    val_after = _val_maps(infer, index)
    curve = _curve(after[calib], thresholds)
    values = [row["false_per_frame"] for row in curve]
    best = choose_threshold(values, thresholds, max_false_per_frame, len(calib))
    threshold = float(thresholds[best])
    before_curve = _curve(before[calib], thresholds)
    alone = lowest_within([r["false_per_frame"] for r in before_curve], max_false_per_frame)
    alone_t = None if alone is None else float(thresholds[alone])
    wanted = {*DEFAULT_THRESHOLDS, threshold, hard_threshold}
    if alone_t is not None:
        wanted.add(alone_t)
    rows_before_list = sweep(val_before, sorted(wanted))
    rows_before = _by_threshold(rows_before_list)
    rows_after_list = sweep(val_after, sorted(wanted))
    rows_after = _by_threshold(rows_after_list)
    del val_before, val_after

    calibration = calibration_record(
        ckpt, files, calib, curve, best, max_false_per_frame, protocol, tile
    )
    pd_after = rows_after[round(threshold, 4)]["Pd"]
    calibration["val_pd_at_threshold"] = {
        "Pd": pd_after,
        "how": f"measured on {index.name} val after the fine-tune",
    }
    result = CalibrationResult(Path(out), threshold, calibration)
    holdout_check(result, files, held, after, best, holdout, seed, thresholds)
    calibration["most_false_targets"] = worst_frames(after[:, best], [f.name for f in files])
    held_before = _curve(before[held], thresholds)
    n_val = len(index.split("val"))
    record.update(
        config=cfg_source,
        seed=seed,
        crop=side,
        hard_threshold=hard_threshold,
        hard_negatives=len(hard),
        random_crops=n_random,
        frames_with_false_targets=len({c.frame for c in hard}),
        frames=[files[i].name for i in calib],
        heldout_frames=[files[i].name for i in held],
        replay={
            "dataset": index.name,
            "root": str(index.root),
            "train_images": len(index.split("train")),
            "val_images": n_val,
        },
        before={
            "heldout_false_per_frame": held_before[best]["false_per_frame"],
            "calibration_false_per_frame": before_curve[best]["false_per_frame"],
            "val": _val_row(rows_before, threshold),
            "threshold_alone": alone_t,
            "heldout_false_per_frame_alone": (
                None if alone is None else held_before[alone]["false_per_frame"]
            ),
            "val_alone": _val_row(rows_before, alone_t),
            "val_at_source_threshold": _val_row(rows_before, hard_threshold),
            # the source model's curves, to compare with calibration["curve"] / ["holdout"]
            "curve": before_curve,
            "holdout_curve": held_before,
            "val_sweep": rows_before_list,
        },
        after={
            "threshold": threshold,
            "heldout_false_per_frame": calibration["holdout"]["false_per_frame"],
            "calibration_false_per_frame": values[best],
            "val": _val_row(rows_after, threshold),
        },
    )
    calibration["finetune"] = record
    pd_before = rows_before[round(threshold, 4)]["Pd"]
    if _finite(pd_before) and _finite(pd_after) and pd_after < pd_before - PD_DROP_WARN:
        result.warnings.append(
            f"the fine-tune cost {index.name} val Pd at threshold {threshold}: {pd_before:.1f} % "
            f"before, {pd_after:.1f} % after (> {PD_DROP_WARN:.0f} points): it will miss targets "
            "it used to find; weigh it against calibration alone (printed below)"
        )
    if _finite(pd_after) and pd_after < PD_WARN:
        result.warnings.append(
            f"the fine-tuned model's {index.name} val Pd at threshold {threshold} is "
            f"{pd_after:.1f} % (< {PD_WARN:.0f} %): it will miss many targets there"
        )
    metrics = {
        "val_sweep": rows_after_list,
        "val_at_threshold": _val_row(rows_after, threshold),
        "val_dataset": f"{index.name} val ({n_val} images, as predict runs)",
    }
    copy = {k: v for k, v in ckpt.items() if k not in RESUME_KEYS and k != "path"}
    weights = model_checkpoint(model, ckpt["model"], ckpt.get("size", "tiny"), {})["state_dict"]
    copy.update(
        state_dict=weights,
        metrics=metrics,
        threshold=threshold,
        protocol=protocol,
        calibration=calibration,
    )
    save_torch(copy, Path(out).expanduser())
    return result


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)
