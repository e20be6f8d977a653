"""The patch lattice and pixel connectivity, one definition each for data, models and metrics.

The lattice starts at the top-left pixel: images are padded at the bottom / right to a multiple
of the patch size P, and patch (r, c) has index r * cols + c (row-major). Objects are
8-connected components, as in the field's toolboxes.
"""

from __future__ import annotations

import numpy as np

# 8-connectivity: two diagonal pixels belong to one object.
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def pad_amount(h: int, w: int, multiple: int) -> tuple[int, int]:
    """(rows, cols) to add at the bottom / right so that H and W become multiples of `multiple`."""
    return (-h) % multiple, (-w) % multiple


def pad_array(a: np.ndarray, multiple: int) -> np.ndarray:
    """Zero-pad the last two axes of `a` bottom / right to multiples of `multiple`."""
    ph, pw = pad_amount(*a.shape[-2:], multiple)
    return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)])


def patch_means(a: np.ndarray, patch_size: int) -> np.ndarray:
    """(H, W) -> (rows, cols) means over the P x P patches (H, W multiples of P)."""
    h, w = a.shape
    p = patch_size
    return a.reshape(h // p, p, w // p, p).mean(axis=(1, 3))


def patch_flags(mask: np.ndarray, patch_size: int) -> np.ndarray:
    """(N,) bool, row-major: the patches of a bool (H, W) mask holding >= 1 true pixel."""
    h, w = mask.shape
    p = patch_size
    return mask.reshape(h // p, p, w // p, p).any(axis=(1, 3)).ravel()
