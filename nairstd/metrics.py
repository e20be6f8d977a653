"""IRSTD evaluation metrics: IoU, nIoU, Pd, Fa (SPEC §6) and Top-K patch coverage (SPEC §2.3).

Conventions shared by every function here:

* Inputs are 2-D arrays (any H×W, square or not). A prediction is either a bool mask or a float
  probability map in [0, 1], binarised at ``> threshold`` (strict, default 0.5). Integer arrays are
  accepted only when they hold 0/1 values; 0..255 maps raise, so callers must convert them (a
  silent ``> 0.5`` on a 0..255 map would turn every faint pixel into a target). A ground-truth
  float map is always binarised at ``> 0.5``, independent of the prediction threshold, so a
  threshold sweep never changes the ground truth.
* Objects are 8-connected components (``scipy.ndimage.label`` with a 3×3 ones structure), labelled
  1..n in raster-scan order of their first pixel. Centroid = mean (row, col) of the pixels.
* Pd: a ground-truth object is detected when a predicted centroid lies at Euclidean distance
  strictly below ``match_distance`` (default 3 px). Greedy matching: ground-truth objects in label
  order, each takes the nearest still-unused predicted object in range (ties: lowest predicted
  label). Each predicted object is used at most once.
* Fa: pixels of the unmatched predicted objects (tracked by label id, never by area) over all
  pixels of all images, reported ×1e-6 (``Fa = fa_pixels / total_pixels * 1e6``).

Edge cases (documented in :meth:`IRSTDMetrics.compute`): IoU = 100 when the whole set has no
ground-truth and no predicted pixel; per-image IoU = 1 for an empty/empty image; Pd = nan when the
set holds no ground-truth object.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from nairstd.grid import EIGHT_CONNECTED, patch_flags

__all__ = [
    "ObjectMatch",
    "IRSTDMetrics",
    "TopKCoverage",
    "as_mask",
    "label_objects",
    "match_objects",
    "evaluate_pairs",
    "target_patch_flags",
    "format_metrics",
]


def _to_numpy(x: Any) -> np.ndarray:
    # Duck-typed tensor support without importing torch at module level.
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_mask(x: Any, threshold: float = 0.5, name: str = "input") -> np.ndarray:
    """Return a 2-D bool mask from a bool mask, a 0/1 integer mask or a float map in [0, 1].

    Float maps are binarised at ``> threshold``. Raises ValueError for non-2-D input, float values
    outside [0, 1] (e.g. logits) or NaN, and integer values other than 0/1 (e.g. 0..255 images).
    """
    a = _to_numpy(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {a.shape}")
    if a.dtype == bool:
        return a
    if np.issubdtype(a.dtype, np.floating):
        if a.size and (np.isnan(a).any() or a.min() < 0.0 or a.max() > 1.0):
            raise ValueError(
                f"{name}: float map must lie in [0, 1] (probabilities, not logits) and hold no NaN"
            )
        return a > threshold
    if np.issubdtype(a.dtype, np.integer):
        if a.size and (a.min() < 0 or a.max() > 1):
            raise ValueError(
                f"{name}: integer arrays must hold only 0/1 (got range {a.min()}..{a.max()}); "
                "convert 0..255 maps to bool or to [0, 1] floats first"
            )
        return a.astype(bool)
    raise ValueError(f"{name}: unsupported dtype {a.dtype}")


def label_objects(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label the 8-connected components of a bool mask.

    Returns ``(labels, centroids, areas)``: ``labels`` (H, W) int with 0 for background and 1..n
    for objects; ``centroids`` (n, 2) float (row, col) means; ``areas`` (n,) int64 pixel counts.
    Object with label ``k`` is row ``k - 1`` of ``centroids`` and ``areas``.
    """
    labels, n = ndimage.label(mask, structure=EIGHT_CONNECTED)
    # bincount over foreground pixels only: sparse masks make this O(#foreground), not O(H*W).
    rows, cols = np.nonzero(labels)
    lab = labels[rows, cols]
    areas = np.bincount(lab, minlength=n + 1)[1:].astype(np.int64)
    if n == 0:
        return labels, np.zeros((0, 2), dtype=np.float64), areas
    sum_r = np.bincount(lab, weights=rows, minlength=n + 1)[1:]
    sum_c = np.bincount(lab, weights=cols, minlength=n + 1)[1:]
    centroids = np.stack([sum_r / areas, sum_c / areas], axis=1)
    return labels, centroids, areas


@dataclass
class ObjectMatch:
    """Per-image object matching result (label ids are 1-based, as in the label maps).

    ``pairs`` holds ``(gt_label, pred_label)`` in the greedy order. ``gt_centroids[k - 1]`` is the
    centroid of ground-truth label ``k`` (same for areas and the predicted side).
    """

    gt_labels: np.ndarray
    pred_labels: np.ndarray
    gt_centroids: np.ndarray
    pred_centroids: np.ndarray
    gt_areas: np.ndarray
    pred_areas: np.ndarray
    pairs: list[tuple[int, int]] = field(default_factory=list)
    unmatched_gt: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    unmatched_pred: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def n_gt(self) -> int:
        return int(len(self.gt_areas))

    @property
    def n_pred(self) -> int:
        return int(len(self.pred_areas))

    @property
    def n_matched(self) -> int:
        return len(self.pairs)

    @property
    def fa_pixels(self) -> int:
        """Pixels of the unmatched predicted objects (summed by label id)."""
        return int(self.pred_areas[self.unmatched_pred - 1].sum())


def match_objects(pred_bool: Any, gt_bool: Any, match_distance: float = 3.0) -> ObjectMatch:
    """Match predicted to ground-truth objects by centroid distance (strictly < match_distance).

    Greedy: ground-truth objects in label order; each takes the nearest still-unused predicted
    object in range, ties going to the lowest predicted label. Inputs are bool masks (or anything
    :func:`as_mask` accepts, binarised at 0.5) of the same 2-D shape.
    """
    pred = as_mask(pred_bool, name="pred")
    gt = as_mask(gt_bool, name="gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} differs from gt shape {gt.shape}")
    gt_labels, gt_c, gt_a = label_objects(gt)
    pred_labels, pred_c, pred_a = label_objects(pred)
    n_gt, n_pred = len(gt_a), len(pred_a)

    pairs: list[tuple[int, int]] = []
    used = np.zeros(n_pred, dtype=bool)
    matched_gt = np.zeros(n_gt, dtype=bool)
    if n_gt and n_pred:
        # Squared distances, compared with match_distance**2: exact for the integer and half-integer
        # centroids of small objects, so "exactly 3 px" is reliably *not* a match.
        d2 = ((gt_c[:, None, :] - pred_c[None, :, :]) ** 2).sum(axis=2)
        limit2 = float(match_distance) ** 2
        for g in range(n_gt):
            cand = np.where(~used & (d2[g] < limit2), d2[g], np.inf)
            p = int(np.argmin(cand))  # argmin returns the first minimum: lowest label on ties
            if np.isfinite(cand[p]):
                used[p] = True
                matched_gt[g] = True
                pairs.append((g + 1, p + 1))

    return ObjectMatch(
        gt_labels=gt_labels,
        pred_labels=pred_labels,
        gt_centroids=gt_c,
        pred_centroids=pred_c,
        gt_areas=gt_a,
        pred_areas=pred_a,
        pairs=pairs,
        unmatched_gt=np.flatnonzero(~matched_gt).astype(np.int64) + 1,
        unmatched_pred=np.flatnonzero(~used).astype(np.int64) + 1,
    )


class IRSTDMetrics:
    """Streaming accumulator for IoU, nIoU, Pd, Fa and false alarms per image over a test set."""

    def __init__(self, threshold: float = 0.5, match_distance: float = 3.0) -> None:
        self.threshold = float(threshold)
        self.match_distance = float(match_distance)
        self.reset()

    def reset(self) -> None:
        """Forget every accumulated image."""
        # Python ints: no overflow however large the test set.
        self.n_images = 0
        self.total_pixels = 0
        self.intersection = 0
        self.union = 0
        self.iou_sum = 0.0
        self.n_gt_objects = 0
        self.n_matched = 0
        self.n_pred_objects = 0
        self.n_false_objects = 0
        self.fa_pixels = 0

    def update(self, pred: Any, gt: Any) -> ObjectMatch:
        """Add one image. ``pred``: bool mask or float map in [0, 1]; ``gt``: bool/0-1 mask.

        Returns the per-image :class:`ObjectMatch` so callers can mark misses and false alarms.
        """
        p_shape, g_shape = np.shape(pred), np.shape(gt)
        if p_shape != g_shape:
            raise ValueError(f"pred shape {p_shape} differs from gt shape {g_shape}")
        p = as_mask(pred, self.threshold, name="pred")
        g = as_mask(gt, 0.5, name="gt")

        inter = int(np.count_nonzero(p & g))
        union = int(np.count_nonzero(p | g))
        self.intersection += inter
        self.union += union
        # Per-image convention: empty GT and empty prediction is a perfect image (IoU 1); empty GT
        # with any predicted pixel gives 0 via inter/union.
        self.iou_sum += 1.0 if union == 0 else inter / union

        m = match_objects(p, g, self.match_distance)
        self.n_images += 1
        self.total_pixels += int(p.size)
        self.n_gt_objects += m.n_gt
        self.n_matched += m.n_matched
        self.n_pred_objects += m.n_pred
        self.n_false_objects += len(m.unmatched_pred)
        self.fa_pixels += m.fa_pixels
        return m

    def compute(self) -> dict[str, float | int]:
        """Return the metrics over all images added since the last reset.

        Keys: ``IoU``, ``nIoU``, ``Pd`` (all %), ``Fa`` (×1e-6), ``FA_per_image`` (paper Eq. 18:
        unmatched predicted objects per image) and the counts ``n_images, n_gt_objects, n_matched,
        n_pred_objects, n_false_objects, total_pixels, fa_pixels, intersection, union``.

        Edge cases: IoU = 100.0 when the whole set has no GT and no predicted pixel (nothing to get
        wrong; nan would break table averages); Pd = nan when the set has no GT object (detection
        rate undefined). Raises ValueError when no image was added.
        """
        if self.n_images == 0:
            raise ValueError("IRSTDMetrics.compute() called before any update()")
        iou = 100.0 if self.union == 0 else 100.0 * self.intersection / self.union
        pd = math.nan if self.n_gt_objects == 0 else 100.0 * self.n_matched / self.n_gt_objects
        return {
            "IoU": iou,
            "nIoU": 100.0 * self.iou_sum / self.n_images,
            "Pd": pd,
            "Fa": self.fa_pixels / self.total_pixels * 1e6,
            "FA_per_image": self.n_false_objects / self.n_images,
            "n_images": self.n_images,
            "n_gt_objects": self.n_gt_objects,
            "n_matched": self.n_matched,
            "n_pred_objects": self.n_pred_objects,
            "n_false_objects": self.n_false_objects,
            "total_pixels": self.total_pixels,
            "fa_pixels": self.fa_pixels,
            "intersection": self.intersection,
            "union": self.union,
        }


def evaluate_pairs(
    pairs: Iterable[tuple[Any, Any]], threshold: float = 0.5, match_distance: float = 3.0
) -> dict[str, float | int]:
    """Accumulate ``(pred, gt)`` pairs with :class:`IRSTDMetrics` and return ``compute()``."""
    m = IRSTDMetrics(threshold=threshold, match_distance=match_distance)
    for pred, gt in pairs:
        m.update(pred, gt)
    return m.compute()


def target_patch_flags(gt_bool: Any, patch_size: int) -> np.ndarray:
    """Flag the patches holding ≥ 1 target pixel, as a (N,) bool array in row-major patch order.

    Patch (r, c) has index ``r * cols + c`` with ``cols = W // patch_size``. H and W must be
    multiples of ``patch_size``.
    """
    gt = as_mask(gt_bool, name="gt")
    h, w = gt.shape
    p = int(patch_size)
    if p <= 0 or h % p or w % p:
        raise ValueError(f"gt shape {gt.shape} is not a multiple of patch_size {patch_size}")
    return patch_flags(gt, p)


class TopKCoverage:
    """Streaming Top-K coverage (Fig. 7): share of target patches among the selected ones."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.n_images = 0
        self.n_patches = 0
        self.n_target_patches = 0
        self.n_selected = 0
        self.n_selected_target = 0

    def update(self, selected_indices: Sequence[int] | np.ndarray, target_flags: Any) -> None:
        """Add one image: the selected patch indices and its (N,) target-patch flags."""
        flags = _to_numpy(target_flags)
        if flags.ndim != 1:
            raise ValueError(f"target_patch_flags must be 1-D, got shape {flags.shape}")
        flags = flags.astype(bool)
        sel = _to_numpy(selected_indices).astype(np.int64).reshape(-1)
        n = len(flags)
        if sel.size and (sel.min() < 0 or sel.max() >= n):
            raise ValueError(f"selected indices must lie in [0, {n}), got {sel.tolist()}")
        if len(np.unique(sel)) != sel.size:
            # Duplicates would count a patch twice in both coverage and precision.
            raise ValueError(f"selected indices must be distinct, got {sel.tolist()}")
        self.n_images += 1
        self.n_patches += n
        self.n_target_patches += int(flags.sum())
        self.n_selected += int(sel.size)
        self.n_selected_target += int(flags[sel].sum())

    def compute(self) -> dict[str, float | int]:
        """``coverage`` = selected target patches / all target patches (%), ``precision`` =
        selected target patches / selected patches (%); nan when the denominator is 0."""
        cov = (
            math.nan
            if self.n_target_patches == 0
            else 100.0 * self.n_selected_target / self.n_target_patches
        )
        prec = (
            math.nan if self.n_selected == 0 else 100.0 * self.n_selected_target / self.n_selected
        )
        return {
            "coverage": cov,
            "precision": prec,
            "n_images": self.n_images,
            "n_patches": self.n_patches,
            "n_target_patches": self.n_target_patches,
            "n_selected": self.n_selected,
            "n_selected_target": self.n_selected_target,
        }


def format_metrics(d: dict[str, Any]) -> str:
    """One-line summary, e.g. ``IoU 71.23 | nIoU 70.10 | Pd 95.12 | Fa 12.34e-6 | FA/img 0.123``."""
    return (
        f"IoU {d['IoU']:.2f} | nIoU {d['nIoU']:.2f} | Pd {d['Pd']:.2f} | "
        f"Fa {d['Fa']:.2f}e-6 | FA/img {d['FA_per_image']:.3f}"
    )
