"""MPCM: multiscale patch-based contrast measure (Wei, You, Li, Pattern Recognition 2016).

At scale l, a 3l x 3l window around each pixel is cut into a 3 x 3 grid of l x l cells: the
central cell T and eight surrounding cells B_1..B_8 (B_i and B_{i+4} on opposite sides). With m
the cell means, d_i = m_T - m_{B_i}, the patch contrast is

    PCM_l = min_{i = 1..4} d_i * d_{i+4},

large only when the centre is brighter than the background on *both* sides along *every* one of
the four directions - a blob, not an edge (an edge has one side with d <= 0). For bright targets
we keep d_i > 0 only (d <- max(d, 0)), as the paper does for the bright-target case; the final
map is MPCM = max_l PCM_l, segmented with the adaptive threshold mean + k std (k in 3 - 5).
The image is first smoothed by a 3 x 3 mean filter (the paper's pre-processing against noise).
Every step is a uniform filter or an array shift: no loops over pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .common import check_image, to_probability

# The four opposite-direction pairs (dy, dx) of surrounding cells.
_PAIRS = (((-1, -1), (1, 1)), ((-1, 0), (1, 0)), ((-1, 1), (1, -1)), ((0, -1), (0, 1)))


def mpcm_response(
    image: np.ndarray, scales: tuple[int, ...] = (3, 5, 7, 9), presmooth: int = 3
) -> np.ndarray:
    """Raw MPCM map (float64, >= 0): max over scales of min over directions of d_i * d_{i+4}."""
    img = check_image(image)
    if presmooth > 1:
        img = ndimage.uniform_filter(img, presmooth, mode="reflect")
    H, W = img.shape
    out = np.zeros_like(img)
    for cs in scales:  # cell size l
        m = ndimage.uniform_filter(img, cs, mode="reflect")  # cell mean centred at every pixel
        mp = np.pad(m, cs, mode="reflect")
        pcm = None
        for a, b in _PAIRS:
            # Means of the two opposite cells whose centres are (dy * l, dx * l) px away.
            ca = mp[cs + a[0] * cs : cs + a[0] * cs + H, cs + a[1] * cs : cs + a[1] * cs + W]
            cb = mp[cs + b[0] * cs : cs + b[0] * cs + H, cs + b[1] * cs : cs + b[1] * cs + W]
            prod = np.maximum(m - ca, 0.0) * np.maximum(m - cb, 0.0)
            pcm = prod if pcm is None else np.minimum(pcm, prod)
        out = np.maximum(out, pcm)
    return out


def mpcm(
    image: np.ndarray,
    scales: tuple[int, ...] = (3, 5, 7, 9),
    presmooth: int = 3,
    k: float = 4.0,
    robust: bool = False,
) -> np.ndarray:
    """MPCM detection map in [0, 1) (0.5 = the paper's threshold mean + k std).

    Parameters (paper defaults):
        image: float (H, W) grey image in [0, 1].
        scales: cell sizes l (paper: 3, 5, 7, 9).
        presmooth: size of the mean filter applied first (paper: 3; 1 disables it).
        k: adaptive-threshold factor (paper: 3 - 5; ours 4, the middle).
        robust: median / MAD statistics instead of mean / std (see `common.to_probability`).
    """
    return to_probability(mpcm_response(image, scales, presmooth), k, robust)
