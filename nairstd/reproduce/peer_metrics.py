"""The peer's side of the gap analysis (`reproduce.official_weights`): inference passes over a
checkpoint, the peer's mask resize and threshold, and its metric code (RPCANet's evaluation and
the older toolbox Pd/Fa) re-implemented beside ours, for the explanation only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from nairstd.data.index import DatasetIndex
from nairstd.grid import EIGHT_CONNECTED
from nairstd.metrics import IRSTDMetrics


@torch.inference_mode()
def probability_maps(
    checkpoint: Path,
    index: DatasetIndex,
    stems: list[str],
    protocol: str,
    preprocessing: dict[str, Any],
    device: str = "auto",
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{stem: (probability map, bool mask)} at the protocol's scoring resolution."""
    from nairstd.data.dataset import IRSTDDataset
    from nairstd.train.checkpoint import load_model, resolve_device

    dev = resolve_device(device)
    model, _ = load_model(checkpoint, dev)
    probe = dataclasses.replace(index, splits={**index.splits, "_analysis": list(stems)})
    data = IRSTDDataset(
        probe,
        "_analysis",
        protocol=protocol,
        size=int(preprocessing.get("input_size") or 256),
        normalize=preprocessing["normalize"],
        resize=preprocessing["resize"],
    )
    maps = {}
    for i in range(len(data)):
        sample = data[i]
        logits = model(sample["image"][None].to(dev))
        prob = torch.sigmoid(logits.float())[0, 0].cpu().numpy()
        maps[sample["stem"]] = (prob, sample["mask"][0].numpy() > 0.5)
    return maps


def opencv_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """OpenCV INTER_NEAREST (source index floor(i * in / out)), as the peer resizes masks; ours
    (PIL) samples pixel centres, which can shift a small target's mask by one pixel."""
    rows = np.minimum(
        (np.arange(shape[0]) * mask.shape[0] / shape[0]).astype(int), mask.shape[0] - 1
    )
    cols = np.minimum(
        (np.arange(shape[1]) * mask.shape[1] / shape[1]).astype(int), mask.shape[1] - 1
    )
    return mask[np.ix_(rows, cols)]


def peer_masks(index: DatasetIndex, stems: list[str], size: int = 256) -> dict[str, np.ndarray]:
    """Ground truth resized the peer's way: the mask file straight to size x size, OpenCV nearest."""
    from nairstd.data.images import read_mask

    return {s: opencv_nearest(read_mask(index.mask_path(s)), (size, size)) for s in stems}


def binarise(prob: np.ndarray, rule: str) -> np.ndarray:
    """`sigmoid>0.5` (ours, = logit > 0) or `p/max>0.5` (the peer's scoring script)."""
    if rule == "sigmoid>0.5":
        return prob > 0.5
    if rule == "p/max>0.5":
        peak = float(prob.max())
        return prob / peak > 0.5 if peak > 0 else np.zeros_like(prob, dtype=bool)
    raise ValueError(f"unknown threshold rule {rule!r}")


def peer_metrics(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """RPCANet's scoring (evaluation/TPFNFP.py + my_pd_fa.py), re-implemented on bool masks.

    IoU = sum TP / sum (TP + FP + FN) and F1 from the same sums (pixel level, whole set); a
    ground-truth target (8-connected) counts as detected when any predicted pixel overlaps it;
    Fa = predicted pixels outside every target / background pixels, over images holding a target.
    """
    tp = fp = fn = 0
    detected = targets = false_px = background = 0
    for pred, gt in pairs:
        tp += int(np.sum(pred & gt))
        fp += int(np.sum(pred & ~gt))
        fn += int(np.sum(~pred & gt))
        labels, n = ndimage.label(gt, structure=EIGHT_CONNECTED)
        if n == 0:
            continue  # their Pd/Fa skip images without a target
        targets += n
        detected += len(np.unique(labels[pred & gt]))
        false_px += int(np.sum(pred & ~gt))
        background += int(np.sum(~gt))
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    return {
        "IoU": 100.0 * tp / max(tp + fp + fn, 1),
        "F1": 100.0 * 2 * precision * recall / max(precision + recall, 1e-12),
        "Pd": 100.0 * detected / max(targets, 1),
        "Fa": 1e6 * false_px / max(background, 1),
    }


def toolbox_pd_fa(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Pd / Fa of the older toolbox code RPCANet also ships (utils/pd_fa.py, PD_FA).

    Objects are 8-connected; each ground-truth object, in label order, takes the first remaining
    predicted object whose centroid lies < 3 px away (not the nearest); Fa sums the areas of the
    predicted objects whose area equals no matched object's area, over all pixels.
    """
    matched_total = targets = fa_pixels = all_pixels = 0
    for pred, gt in pairs:
        pl, npred = ndimage.label(pred, structure=EIGHT_CONNECTED)
        gl, ngt = ndimage.label(gt, structure=EIGHT_CONNECTED)
        pc = ndimage.center_of_mass(pred, pl, range(1, npred + 1)) if npred else []
        gc = ndimage.center_of_mass(gt, gl, range(1, ngt + 1)) if ngt else []
        areas = list(np.bincount(pl.ravel(), minlength=npred + 1)[1:]) if npred else []
        remaining = list(range(npred))
        matched_areas = []
        for g in gc:
            for j in remaining:
                if np.hypot(pc[j][0] - g[0], pc[j][1] - g[1]) < 3:
                    matched_areas.append(areas[j])
                    remaining.remove(j)
                    break
        targets += ngt
        matched_total += len(matched_areas)
        fa_pixels += int(sum(a for a in areas if a not in matched_areas))
        all_pixels += pred.size
    return {
        "Pd": 100.0 * matched_total / max(targets, 1),
        "Fa": 1e6 * fa_pixels / max(all_pixels, 1),
    }


def our_metrics(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """SPEC §6 (nairstd.metrics.IRSTDMetrics) on bool masks, plus pixel F1 for comparison."""
    meter = IRSTDMetrics()
    for pred, gt in pairs:
        meter.update(pred, gt)
    result = meter.compute()
    inter, union = result["intersection"], result["union"]
    return {
        "IoU": result["IoU"],
        "nIoU": result["nIoU"],
        "F1": 100.0 * 2 * inter / max(inter + union, 1),  # F1 = 2 IoU / (1 + IoU) on pixels
        "Pd": result["Pd"],
        "Fa": result["Fa"],
    }


METRIC_CODES = (
    ("ours (SPEC 6)", our_metrics),
    ("peer", peer_metrics),
    ("peer toolbox PD_FA", toolbox_pd_fa),
)
