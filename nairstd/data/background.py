"""Target-free frames: a frame with its targets inpainted out by the surrounding background.

SIRST has no target-free image, so both the target-free training samples (`background_p`) and the
out-of-distribution check (`nairstd.ood`) make them from real frames: every target (dilated by a
margin, so its halo goes too) is filled by a harmonic (smooth) interpolation of the pixels around
it, plus noise with the standard deviation of the ring of background around it, so the filled hole
has the local grain and is no smoother than its surroundings (a smooth blob would be a cue).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MARGIN = 3  # px of dilation around each target: the halo of a blurred point source goes too
RING = 4  # px of background around the hole whose spread sets the added noise


def inpaint_targets(
    image: np.ndarray,
    mask: np.ndarray,
    margin: int = MARGIN,
    seed: int = 0,
    iterations: int = 200,
) -> np.ndarray:
    """`image` (H, W) float in [0, 1] with every target of `mask` replaced by its surroundings.

    Each 8-connected target is handled in its own bounding box: the hole starts from its nearest
    background pixel values, is relaxed to the harmonic fill (Jacobi iterations of the 4-neighbour
    mean with the border fixed), and gets Gaussian noise of the ring's standard deviation.
    """
    image = np.asarray(image, np.float32)
    mask = np.asarray(mask, bool)
    if image.shape != mask.shape:
        raise ValueError(f"image {image.shape} and mask {mask.shape} differ in shape")
    if not mask.any():
        return image.copy()
    hole = ndimage.binary_dilation(mask, np.ones((3, 3), bool), iterations=margin)
    out = image.copy()
    rng = np.random.default_rng(seed)
    labels, _ = ndimage.label(hole, np.ones((3, 3), bool))
    pad = RING + 1
    h, w = image.shape
    for i, box in enumerate(ndimage.find_objects(labels)):
        if box is None:
            continue
        ys = slice(max(0, box[0].start - pad), min(h, box[0].stop + pad))
        xs = slice(max(0, box[1].start - pad), min(w, box[1].stop + pad))
        part = out[ys, xs]
        here = labels[ys, xs] == i + 1
        known = ~hole[ys, xs]
        if not known.any():  # the hole covers the whole frame: nothing to copy from
            part[here] = float(np.median(image))
            continue
        # Start from the nearest known value (fast convergence), then relax to the harmonic fill.
        _, (iy, ix) = ndimage.distance_transform_edt(~known, return_indices=True)
        fill = part[iy, ix].copy()
        for _ in range(iterations):
            avg = 0.25 * (
                np.roll(fill, 1, 0)
                + np.roll(fill, -1, 0)
                + np.roll(fill, 1, 1)
                + np.roll(fill, -1, 1)
            )
            fill = np.where(here, avg, fill)
        ring = ndimage.binary_dilation(here, np.ones((3, 3), bool), iterations=RING) & known
        spread = float(part[ring].std()) if ring.any() else 0.0
        noisy = fill + rng.normal(0.0, spread, fill.shape).astype(np.float32)
        part[here] = np.clip(noisy[here], 0.0, 1.0)
    return out


def target_free(
    image: np.ndarray, mask: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(inpainted image, all-false mask): a target-free sample made from a frame with targets."""
    return inpaint_targets(image, mask, seed=seed), np.zeros(mask.shape, bool)
