"""nairstd.metrics cross-checked against a plain re-implementation of SPEC §6 (scikit-image
labelling, plain loops) on random masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.measure import label as sk_label
from skimage.measure import regionprops

from nairstd.metrics import (
    evaluate_pairs,
)


def _ref_objects(mask: np.ndarray) -> list[tuple[tuple[float, float], int]]:
    """(centroid, area) per 8-connected object, ordered by first pixel in raster order."""
    w = mask.shape[1]
    out = []
    for rp in regionprops(sk_label(mask, connectivity=2)):
        first = min(int(r) * w + int(c) for r, c in rp.coords)
        out.append((first, (float(rp.centroid[0]), float(rp.centroid[1])), int(rp.area)))
    out.sort()
    return [(c, a) for _, c, a in out]


def _ref_evaluate(pairs, threshold=0.5, match_distance=3.0) -> dict:
    """Plain-loop re-implementation of SPEC §6, independent of nairstd.metrics."""
    inter_tot = union_tot = 0
    ious = []
    n_gt = n_matched = n_pred = n_false = fa_pixels = total = 0
    for pred, gt in pairs:
        p = pred > threshold if pred.dtype != bool else pred
        g = gt.astype(bool)
        h, w = p.shape
        inter = union = 0
        for r in range(h):
            for c in range(w):
                inter += bool(p[r, c] and g[r, c])
                union += bool(p[r, c] or g[r, c])
        inter_tot += inter
        union_tot += union
        ious.append(1.0 if union == 0 else inter / union)
        gts, preds = _ref_objects(g), _ref_objects(p)
        used: set[int] = set()
        for gc, _ in gts:
            best, best_d = None, None
            for j, (pc, _) in enumerate(preds):
                d = math.dist(gc, pc)
                if j not in used and d < match_distance and (best_d is None or d < best_d):
                    best, best_d = j, d
            if best is not None:
                used.add(best)
                n_matched += 1
        for j, (_, area) in enumerate(preds):
            if j not in used:
                n_false += 1
                fa_pixels += area
        n_gt += len(gts)
        n_pred += len(preds)
        total += h * w
    return {
        "IoU": 100.0 if union_tot == 0 else 100.0 * inter_tot / union_tot,
        "nIoU": 100.0 * sum(ious) / len(ious),
        "Pd": math.nan if n_gt == 0 else 100.0 * n_matched / n_gt,
        "Fa": fa_pixels / total * 1e6,
        "FA_per_image": n_false / len(ious),
        "n_gt_objects": n_gt,
        "n_matched": n_matched,
        "n_pred_objects": n_pred,
        "n_false_objects": n_false,
        "fa_pixels": fa_pixels,
        "total_pixels": total,
    }


def _random_pairs(seed: int, n: int = 20) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    shapes = [(32, 32), (24, 40), (40, 28)]
    pairs = []
    for i in range(n):
        h, w = shapes[i % len(shapes)]
        gt = np.zeros((h, w), bool)
        pred = np.zeros((h, w), bool)
        for _ in range(rng.integers(0, 5)):
            r, c = rng.integers(0, h - 3), rng.integers(0, w - 3)
            bh, bw = rng.integers(1, 4, size=2)
            gt[r : r + bh, c : c + bw] = True
            if rng.random() < 0.8:  # detected, with a shift that straddles the 3 px radius
                dr, dc = rng.integers(-3, 4, size=2)
                ph, pw = rng.integers(1, 4, size=2)
                r2, c2 = np.clip(r + dr, 0, h - 1), np.clip(c + dc, 0, w - 1)
                pred[r2 : r2 + ph, c2 : c2 + pw] = True
        for _ in range(rng.integers(0, 3)):  # false alarms
            r, c = rng.integers(0, h - 2), rng.integers(0, w - 2)
            pred[r : r + rng.integers(1, 3), c : c + rng.integers(1, 3)] = True
        if i % 2:  # exercise the float-map path
            prob = np.where(pred, rng.uniform(0.51, 1.0, (h, w)), rng.uniform(0.0, 0.5, (h, w)))
            pairs.append((prob.astype(np.float32), gt))
        else:
            pairs.append((pred, gt))
    return pairs


@pytest.mark.parametrize("seed", [0, 1])
def test_cross_check_against_plain_reimplementation(seed):
    pairs = _random_pairs(seed)
    got = evaluate_pairs(pairs)
    ref = _ref_evaluate(pairs)
    for k, v in ref.items():
        if isinstance(v, float) and math.isnan(v):
            assert math.isnan(got[k]), k
        else:
            assert got[k] == pytest.approx(v), k
    # The random set must actually exercise matches, misses and false alarms.
    assert 0 < ref["n_matched"] < ref["n_gt_objects"]
    assert ref["n_false_objects"] > 0
