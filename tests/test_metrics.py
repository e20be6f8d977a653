"""Tests for nairstd.metrics: hand-computed cases (the cross-check: test_metrics_crosscheck.py).

Every expected number below is worked out by hand in the comments; none is recomputed by the code
under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from nairstd.metrics import (
    IRSTDMetrics,
    ObjectMatch,
    TopKCoverage,
    as_mask,
    evaluate_pairs,
    format_metrics,
    label_objects,
    match_objects,
    target_patch_flags,
)


def img(shape: tuple[int, int], pixels: list[tuple[int, int]]) -> np.ndarray:
    """Bool image of `shape` with the listed (row, col) pixels set."""
    a = np.zeros(shape, dtype=bool)
    for r, c in pixels:
        a[r, c] = True
    return a


def block(r0: int, r1: int, c0: int, c1: int) -> list[tuple[int, int]]:
    """Pixels of the inclusive rectangle rows r0..r1, cols c0..c1."""
    return [(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]


def one(pred: np.ndarray, gt: np.ndarray, **kw) -> dict:
    m = IRSTDMetrics(**kw)
    m.update(pred, gt)
    return m.compute()


# --------------------------------------------------------------------------- empty cases


def test_empty_gt_empty_pred():
    z = np.zeros((8, 8), dtype=bool)
    d = one(z, z)
    # No pixel anywhere: IoU convention 100; per-image IoU 1 -> nIoU 100; no GT object -> Pd nan.
    assert d["IoU"] == 100.0
    assert d["nIoU"] == 100.0
    assert math.isnan(d["Pd"])
    assert d["Fa"] == 0.0
    assert d["FA_per_image"] == 0.0
    assert d["n_images"] == 1
    assert d["total_pixels"] == 64
    assert d["n_gt_objects"] == d["n_matched"] == d["n_pred_objects"] == 0
    assert d["n_false_objects"] == d["fa_pixels"] == 0


def test_empty_gt_nonempty_pred():
    gt = np.zeros((10, 10), dtype=bool)
    pred = img((10, 10), [(1, 1), (1, 2), (2, 1)])  # one 3-pixel object
    d = one(pred, gt)
    # inter 0, union 3 -> IoU 0; per-image IoU 0 -> nIoU 0.
    assert d["IoU"] == 0.0
    assert d["nIoU"] == 0.0
    assert math.isnan(d["Pd"])
    # Fa = 3 px / 100 px * 1e6 = 30000; one unmatched object on one image -> FA/img 1.
    assert d["fa_pixels"] == 3
    assert d["Fa"] == pytest.approx(30000.0)
    assert d["FA_per_image"] == 1.0
    assert d["n_pred_objects"] == 1
    assert d["n_false_objects"] == 1


# --------------------------------------------------------------------------- distance threshold


def test_distance_exactly_three_is_not_matched():
    gt = img((16, 16), [(5, 5)])
    pred = img((16, 16), [(5, 8)])  # centroid distance |8 - 5| = 3, not < 3
    d = one(pred, gt)
    assert d["Pd"] == 0.0
    assert d["n_matched"] == 0
    assert d["n_false_objects"] == 1
    assert d["fa_pixels"] == 1
    # Fa = 1 / 256 * 1e6 = 3906.25
    assert d["Fa"] == pytest.approx(3906.25)
    # With a looser radius the same pair matches.
    d35 = one(pred, gt, match_distance=3.5)
    assert d35["Pd"] == 100.0
    assert d35["fa_pixels"] == 0


def test_distance_exactly_three_fractional_centroids():
    # GT (5,5)+(5,6): centroid (5, 5.5). Pred (5,8)+(5,9): centroid (5, 8.5). Distance 3.0 -> miss.
    gt = img((12, 12), [(5, 5), (5, 6)])
    pred = img((12, 12), [(5, 8), (5, 9)])
    m = match_objects(pred, gt)
    np.testing.assert_array_equal(m.gt_centroids, [[5.0, 5.5]])
    np.testing.assert_array_equal(m.pred_centroids, [[5.0, 8.5]])
    assert m.pairs == []
    assert m.unmatched_pred.tolist() == [1]
    assert m.fa_pixels == 2


def test_distance_just_below_three_is_matched():
    gt = img((16, 16), [(5, 5)])
    # 2x2 block rows 6-7, cols 7-8: centroid (6.5, 7.5).
    # d^2 = 1.5^2 + 2.5^2 = 2.25 + 6.25 = 8.5 -> d = 2.9155 < 3 -> matched.
    pred = img((16, 16), block(6, 7, 7, 8))
    d = one(pred, gt)
    assert d["Pd"] == 100.0
    assert d["n_matched"] == 1
    assert d["fa_pixels"] == 0
    assert d["Fa"] == 0.0
    # Pd and IoU are independent: no pixel overlaps -> inter 0, union 1 + 4 = 5 -> IoU 0.
    assert d["IoU"] == 0.0


def test_distance_just_above_three_is_not_matched():
    gt = img((16, 16), [(5, 5)])
    # (5,8)+(6,8): centroid (5.5, 8). d^2 = 0.25 + 9 = 9.25 -> d = 3.041 -> miss.
    pred = img((16, 16), [(5, 8), (6, 8)])
    d = one(pred, gt)
    assert d["Pd"] == 0.0
    assert d["fa_pixels"] == 2


# --------------------------------------------------------------------------- greedy matching


def test_one_prediction_between_two_gt_objects():
    # GT (5,3) is label 1, (5,7) label 2 (raster order). Pred (5,5) is 2 px from both.
    gt = img((11, 11), [(5, 3), (5, 7)])
    pred = img((11, 11), [(5, 5)])
    m = match_objects(pred, gt)
    assert m.pairs == [(1, 1)]  # GT label 1 comes first and takes it
    assert m.unmatched_gt.tolist() == [2]
    assert m.unmatched_pred.tolist() == []
    d = one(pred, gt)
    assert d["Pd"] == 50.0  # 1 of 2
    assert d["n_false_objects"] == 0
    assert d["Fa"] == 0.0


def test_tie_between_predictions_goes_to_lowest_label():
    # GT (5,5); preds (5,3) label 1 and (5,7) label 2, both at distance 2.
    gt = img((11, 11), [(5, 5)])
    pred = img((11, 11), [(5, 3), (5, 7)])
    m = match_objects(pred, gt)
    assert m.pairs == [(1, 1)]
    assert m.unmatched_pred.tolist() == [2]
    assert m.fa_pixels == 1


def test_nearest_prediction_wins_over_label_order():
    # GT (5,5); pred (3,5) label 1 at d=2, pred (5,6) label 2 at d=1 -> label 2 is taken.
    gt = img((11, 11), [(5, 5)])
    pred = img((11, 11), [(3, 5), (5, 6)])
    m = match_objects(pred, gt)
    assert m.pairs == [(1, 2)]
    assert m.unmatched_pred.tolist() == [1]


def test_greedy_order_is_pinned_even_when_suboptimal():
    # GT label 1 at (5,4), label 2 at (5,7). Pred label 1 = B at (5,2), label 2 = A at (5,5).
    # GT1: A at d=1, B at d=2 -> takes A (nearest). GT2: A used, B at d=5 -> no match.
    # (An optimal assignment would give GT1-B, GT2-A; the field's greedy rule does not.)
    gt = img((11, 11), [(5, 4), (5, 7)])
    pred = img((11, 11), [(5, 2), (5, 5)])
    m = match_objects(pred, gt)
    assert m.pairs == [(1, 2)]
    assert m.unmatched_gt.tolist() == [2]
    assert m.unmatched_pred.tolist() == [1]
    d = one(pred, gt)
    assert d["Pd"] == 50.0
    assert d["fa_pixels"] == 1


def test_unmatched_object_with_same_area_as_matched_counts_in_fa():
    # Old toolboxes removed unmatched objects whose area equals a matched one's. Here both predicted
    # objects are 2x2 (area 4); the one at rows 6-7, cols 6-7 is far from GT and must count.
    gt = img((10, 10), block(1, 2, 1, 2))
    pred = img((10, 10), block(1, 2, 1, 2) + block(6, 7, 6, 7))
    d = one(pred, gt)
    assert d["n_pred_objects"] == 2
    assert d["n_matched"] == 1
    assert d["n_false_objects"] == 1
    assert d["fa_pixels"] == 4
    assert d["Fa"] == pytest.approx(40000.0)  # 4 / 100 * 1e6
    assert d["FA_per_image"] == 1.0
    assert d["Pd"] == 100.0
    assert d["IoU"] == 50.0  # inter 4, union 8


# --------------------------------------------------------------------------- accumulation


def _three_images() -> list[tuple[np.ndarray, np.ndarray]]:
    # A (4x4): GT 2x2 rows 0-1 cols 0-1 (4 px); pred (0,0),(0,1): inter 2, union 4 -> 0.5.
    #   centroids (0.5, 0.5) vs (0, 0.5): d = 0.5 -> matched.
    a = (img((4, 4), [(0, 0), (0, 1)]), img((4, 4), block(0, 1, 0, 1)))
    # B (4x4): GT rows 0-2, all cols (12 px); pred identical: inter 12, union 12 -> 1.0.
    b = (img((4, 4), block(0, 2, 0, 3)), img((4, 4), block(0, 2, 0, 3)))
    # C (4x4): empty/empty -> per-image IoU 1.
    c = (np.zeros((4, 4), bool), np.zeros((4, 4), bool))
    return [a, b, c]


def test_several_images_iou_is_ratio_of_sums_niou_is_mean():
    m = IRSTDMetrics()
    for p, g in _three_images():
        m.update(p, g)
    d = m.compute()
    # IoU = (2 + 12 + 0) / (4 + 12 + 0) = 14 / 16 = 87.5 %  (the mean of 0.5, 1, 1 would differ)
    assert d["IoU"] == pytest.approx(87.5)
    # nIoU = (0.5 + 1 + 1) / 3 = 83.333... %
    assert d["nIoU"] == pytest.approx(250.0 / 3.0)
    assert d["Pd"] == 100.0  # 2 GT objects, both matched
    assert d["n_images"] == 3
    assert d["total_pixels"] == 48
    assert d["n_gt_objects"] == 2
    assert d["n_matched"] == 2
    assert d["intersection"] == 14
    assert d["union"] == 16
    assert d["Fa"] == 0.0
    # evaluate_pairs is the same computation.
    assert evaluate_pairs(_three_images()) == d


def test_reset_and_compute_without_update():
    m = IRSTDMetrics()
    with pytest.raises(ValueError):
        m.compute()
    for p, g in _three_images():
        m.update(p, g)
    m.reset()
    m.update(*_three_images()[1])
    d = m.compute()
    assert d["n_images"] == 1
    assert d["IoU"] == 100.0
    assert d["total_pixels"] == 16


def test_non_square_image():
    # 6 x 10 (H x W). GT: (1,8) label 1; (4,1)+(5,1) label 2, centroid (4.5, 1).
    # Pred (raster labels): 1 = (0,0); 2 = (1,7); 3 = (3,5)+(3,6), centroid (3, 5.5); 4 = (4,1)+(5,1).
    # GT1 (1,8): pred 2 at d=1; pred 3 at sqrt(4 + 6.25) = 3.2 -> takes pred 2.
    # GT2 (4.5,1): pred 4 at d=0 -> takes pred 4. Unmatched preds 1 and 3: 1 + 2 = 3 px.
    gt = img((6, 10), [(1, 8), (4, 1), (5, 1)])
    pred = img((6, 10), [(0, 0), (1, 7), (3, 5), (3, 6), (4, 1), (5, 1)])
    m = match_objects(pred, gt)
    np.testing.assert_array_equal(m.gt_centroids, [[1.0, 8.0], [4.5, 1.0]])
    np.testing.assert_array_equal(m.gt_areas, [1, 2])
    np.testing.assert_array_equal(m.pred_areas, [1, 1, 2, 2])
    assert m.pairs == [(1, 2), (2, 4)]
    assert m.unmatched_pred.tolist() == [1, 3]
    d = one(pred, gt)
    assert d["total_pixels"] == 60
    assert d["fa_pixels"] == 3
    assert d["Fa"] == pytest.approx(50000.0)  # 3 / 60 * 1e6
    assert d["FA_per_image"] == 2.0
    assert d["Pd"] == 100.0
    # inter = {(4,1),(5,1)} = 2; union = 3 + 6 - 2 = 7 -> 200/7 %
    assert d["IoU"] == pytest.approx(200.0 / 7.0)


def test_eight_connectivity():
    # Diagonal pixels form one object, centroid (2.5, 2.5).
    labels, cents, areas = label_objects(img((6, 6), [(2, 2), (3, 3)]))
    assert labels.max() == 1
    np.testing.assert_array_equal(cents, [[2.5, 2.5]])
    np.testing.assert_array_equal(areas, [2])
    labels, _, _ = label_objects(img((6, 6), [(2, 3), (3, 2)]))  # anti-diagonal too
    assert labels.max() == 1
    # GT (2,2) only; pred diagonal pair: one object at d = sqrt(0.5) -> matched, no false alarm
    # (4-connectivity would leave (3,3) as a 1-px false alarm).
    d = one(img((6, 6), [(2, 2), (3, 3)]), img((6, 6), [(2, 2)]))
    assert d["n_pred_objects"] == 1
    assert d["n_false_objects"] == 0
    assert d["fa_pixels"] == 0
    assert d["Pd"] == 100.0


# --------------------------------------------------------------------------- inputs


def test_float_map_threshold_is_strict_and_configurable():
    pred = np.zeros((5, 5), dtype=np.float32)
    pred[1, 1] = 0.5  # not > 0.5 -> background at the default threshold
    pred[3, 3] = 0.51
    gt = img((5, 5), [(3, 3)])
    d = one(pred, gt)
    assert d["IoU"] == 100.0
    assert d["Pd"] == 100.0
    assert d["fa_pixels"] == 0
    d = one(pred, gt, threshold=0.4)  # now (1,1) is a 1-px false alarm
    assert d["fa_pixels"] == 1
    assert d["Fa"] == pytest.approx(40000.0)  # 1 / 25 * 1e6
    assert d["IoU"] == 50.0  # inter 1, union 2


def test_shape_mismatch_raises_with_both_shapes():
    m = IRSTDMetrics()
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\)"):
        m.update(np.zeros((4, 5), bool), np.zeros((5, 4), bool))
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\)"):
        match_objects(np.zeros((4, 5), bool), np.zeros((5, 4), bool))


def test_input_validation():
    with pytest.raises(ValueError, match="0..255"):
        as_mask(np.array([[0, 255]], dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        as_mask(np.array([[0.0, 1.5]]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        as_mask(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="2-D"):
        as_mask(np.zeros((1, 4, 4), bool))
    np.testing.assert_array_equal(as_mask(np.array([[0, 1]], dtype=np.uint8)), [[False, True]])


def test_update_returns_object_match():
    m = IRSTDMetrics()
    r = m.update(img((5, 5), [(1, 1)]), img((5, 5), [(1, 1)]))
    assert isinstance(r, ObjectMatch)
    assert r.n_gt == r.n_pred == r.n_matched == 1
    assert r.gt_labels[1, 1] == 1 and r.pred_labels[1, 1] == 1


# --------------------------------------------------------------------------- Top-K coverage


def test_target_patch_flags_row_major():
    # 4 x 6 with patch 2 -> 2 rows x 3 cols of patches.
    # (0,2) and (1,3) are in patch (0,1) -> index 1; (3,5) is in patch (1,2) -> index 1*3+2 = 5.
    gt = img((4, 6), [(0, 2), (1, 3), (3, 5)])
    flags = target_patch_flags(gt, 2)
    assert flags.tolist() == [False, True, False, False, False, True]
    with pytest.raises(ValueError, match=r"\(5, 6\)"):
        target_patch_flags(np.zeros((5, 6), bool), 2)


def test_topk_coverage_hand_case():
    t = TopKCoverage()
    f1 = np.zeros(8, bool)
    f1[[1, 5]] = True
    t.update([1, 2, 3], f1)  # 1 of 2 targets selected
    f2 = np.zeros(8, bool)
    f2[[0, 7]] = True
    t.update(np.array([0, 7, 4]), f2)  # 2 of 2
    t.update([0, 1, 2], np.zeros(8, bool))  # no target
    d = t.compute()
    # coverage = (1 + 2 + 0) / (2 + 2 + 0) = 75 %; precision = 3 / 9 = 33.33 %
    assert d["coverage"] == pytest.approx(75.0)
    assert d["precision"] == pytest.approx(100.0 / 3.0)
    assert d["n_images"] == 3
    assert d["n_patches"] == 24
    assert d["n_target_patches"] == 4
    assert d["n_selected"] == 9
    assert d["n_selected_target"] == 3
    t.reset()
    d = t.compute()
    assert math.isnan(d["coverage"]) and math.isnan(d["precision"])
    with pytest.raises(ValueError, match="distinct"):
        t.update([1, 1], f1)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        t.update([8], f1)


def test_format_metrics():
    d = {"IoU": 71.234, "nIoU": 70.1, "Pd": 95.123, "Fa": 12.3456, "FA_per_image": 0.1234}
    assert format_metrics(d) == "IoU 71.23 | nIoU 70.10 | Pd 95.12 | Fa 12.35e-6 | FA/img 0.123"
