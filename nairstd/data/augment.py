"""Scale augmentation: train at the clutter and target scales `predict` meets.

Training resized every SIRST frame to 256x256 while `predict` runs at native resolution on frames
up to 1920 px wide, so the model never saw those scales. With a scale range [lo, hi] every training
frame is rescaled by a factor drawn log-uniformly in it (image bilinear, mask by area coverage
>= 1/2 with every target keeping at least its centroid pixel, so small targets are not erased),
then cropped at that native scale.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from scipy import ndimage

from nairstd.data.images import resize_image


def draw_scale(lo: float, hi: float, rng: np.random.Generator) -> float:
    """A factor log-uniform in [lo, hi] (no draw when lo == hi)."""
    if lo == hi:
        return float(lo)
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def rescale_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool mask resized to `shape` (H, W): a pixel is target when targets cover >= half of it;
    a target that would vanish (shrunk below one pixel) keeps the pixel it covers most."""
    frac = np.asarray(
        Image.fromarray(mask.astype(np.float32), mode="F").resize(
            (shape[1], shape[0]), Image.BILINEAR
        )
    )
    out = frac >= 0.5
    labels, n = ndimage.label(mask, np.ones((3, 3), bool))
    if n == 0:
        return out
    sy, sx = shape[0] / mask.shape[0], shape[1] / mask.shape[1]
    for cy, cx in ndimage.center_of_mass(mask, labels, range(1, n + 1)):
        y = min(shape[0] - 1, int(cy * sy))
        x = min(shape[1] - 1, int(cx * sx))
        if not out[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].any():
            out[y, x] = True  # a vanished target keeps its centroid pixel
    return out


def rescale_pair(
    image: np.ndarray, mask: np.ndarray, factor: float, min_side: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask rescaled by `factor` (sides rounded, at least `min_side`)."""
    if factor == 1.0:
        return image, mask
    h, w = image.shape
    shape = (max(min_side, round(h * factor)), max(min_side, round(w * factor)))
    return resize_image(image, shape), rescale_mask(mask, shape)


def pad_to(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad an image smaller than `size` on a side up to it with its own median grey (bottom and
    right; the mask with False). A shrunk frame padded with black would, once standardised, make
    the whole real scene look bright: unlike anything `predict` sees."""
    h, w = image.shape
    if h >= size and w >= size:
        return image, mask
    pad = ((0, max(0, size - h)), (0, max(0, size - w)))
    fill = float(np.median(image))
    return np.pad(image, pad, constant_values=fill), np.pad(mask, pad, constant_values=False)
