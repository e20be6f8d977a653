"""The input preprocessing a checkpoint expects, applied the same way by eval, predict and tables.

A checkpoint may carry a ``preprocessing`` dict; without one it is ours (SPEC §5):

* ``normalize``: ``"standardize"`` (ours: per-image zero mean / unit variance) or ``"unit"``
  (the grey image in [0, 1] as read, i.e. ``/255`` for 8-bit files, no mean/std: most peers' code).
* ``resize``: how images are brought to the input size under the ``resize256`` protocol:
  ``"bilinear"`` (ours: PIL bilinear, which low-pass filters when shrinking) or
  ``"bilinear-opencv"`` (OpenCV ``INTER_LINEAR``: two taps, no anti-aliasing, pixel centres at +0.5).
* ``input_size``: the square side the weights were trained at (None: the caller's ``image_size``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nairstd.data.images import resize_image, standardize

OURS: dict[str, Any] = {"normalize": "standardize", "resize": "bilinear", "input_size": None}
NORMALIZE = ("standardize", "unit")
RESIZE = ("bilinear", "bilinear-opencv")


def checkpoint_preprocessing(ckpt: dict[str, Any] | None) -> dict[str, Any]:
    """The preprocessing of a checkpoint dict (ours when it records none), validated."""
    prep = {**OURS, **((ckpt or {}).get("preprocessing") or {})}
    if prep["normalize"] not in NORMALIZE:
        raise ValueError(f"unknown normalize {prep['normalize']!r}; choose one of {NORMALIZE}")
    if prep["resize"] not in RESIZE:
        raise ValueError(f"unknown resize {prep['resize']!r}; choose one of {RESIZE}")
    return prep


def normalize_image(image: np.ndarray, how: str = "standardize") -> np.ndarray:
    """The network input from a float [0, 1] grey image."""
    if how == "standardize":
        return standardize(image.astype(np.float32))
    if how == "unit":
        return image.astype(np.float32)
    raise ValueError(f"unknown normalize {how!r}; choose one of {NORMALIZE}")


def resize_input(image: np.ndarray, shape: tuple[int, int], how: str = "bilinear") -> np.ndarray:
    """Resize a float [0, 1] image to (H, W) the way the weights' own code did."""
    if how == "bilinear":
        return resize_image(image, shape)
    if how == "bilinear-opencv":
        # align_corners=False without antialiasing is OpenCV's INTER_LINEAR sampling grid; OpenCV
        # also rounds to uint8 (<= 0.5/255 apart), which we do not imitate.
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
        out = F.interpolate(x, size=shape, mode="bilinear", align_corners=False, antialias=False)
        return np.clip(out[0, 0].numpy(), 0.0, 1.0)
    raise ValueError(f"unknown resize {how!r}; choose one of {RESIZE}")
