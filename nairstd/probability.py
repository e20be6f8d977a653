"""Probability maps of one image: a network under a protocol (tiled at native resolution so
memory stays bounded at any size) or a training-free method under the same protocols.
`nairstd.predict` runs these over a user's files; `eval`, `sweep` and the benchmarks call them too.
The network is a torch model or an exported one on onnxruntime (a
`nairstd.onnx_backend.ProbabilityModel`): both go through the same preprocessing, tiling and
resizing here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from nairstd.data.images import resize_image
from nairstd.data.preprocess import checkpoint_preprocessing, normalize_image, resize_input
from nairstd.models.traits import unwrap
from nairstd.onnx_backend import ProbabilityModel
from nairstd.protocols import NATIVE, PROTOCOLS, RESIZE256

# Tiled inference: windows of at most TILE px a side, each keeping its core (TILE - 2 MARGIN).
# Both are multiples of 64 so every window starts on the model's patch grid (P = 32, the
# detector's pad multiple divides 64) and the patch split of the image is the same as whole.
# A 1024 px window peaks near 0.3 GB in the tiny model (measured: whole 8000x6000 = 12 GB).
TILE = 1024
MARGIN = 64


def _standardized(image: np.ndarray) -> np.ndarray:
    """`standardize` with one full-size temporary (same arithmetic, in place)."""
    mean, std = image.mean(), image.std()
    x = image - mean
    x /= std + 1e-6
    return x


def _forward_prob(
    net: nn.Module | ProbabilityModel, x: np.ndarray, device: torch.device | str
) -> np.ndarray:
    if isinstance(net, ProbabilityModel):  # an exported graph: it holds the sigmoid
        return net.probability(x)
    t = torch.from_numpy(np.ascontiguousarray(x))[None, None].to(device)
    return torch.sigmoid(net(t).float())[0, 0].cpu().numpy()


def tile_windows(
    h: int, w: int, tile: int = TILE, margin: int = MARGIN
) -> list[tuple[slice, slice, slice, slice]]:
    """(window rows, window cols, core rows inside the window, core cols inside the window)
    covering an (h, w) image; the cores tile it exactly, without overlap."""
    core = tile - 2 * margin
    if core < 1:
        raise ValueError(f"tile {tile} must exceed twice the margin {margin}")
    out = []
    for y0 in range(0, h, core):
        y1, wy0 = min(y0 + core, h), max(0, y0 - margin)
        wy1 = min(h, y1 + margin)
        for x0 in range(0, w, core):
            x1, wx0 = min(x0 + core, w), max(0, x0 - margin)
            wx1 = min(w, x1 + margin)
            out.append(
                (
                    slice(wy0, wy1),
                    slice(wx0, wx1),
                    slice(y0 - wy0, y1 - wy0),
                    slice(x0 - wx0, x1 - wx0),
                )
            )
    return out


@torch.inference_mode()
def predict_probability(
    model: nn.Module | ProbabilityModel,
    image: np.ndarray,
    protocol: str = NATIVE,
    size: int = 256,
    device: torch.device | str = "cpu",
    tile: int = TILE,
    margin: int = MARGIN,
    preprocessing: dict | None = None,
) -> np.ndarray:
    """Target probability map (H, W) float32 in [0, 1] for a float [0, 1] grey image (H, W).

    Under ``native`` an image with a side over `tile` (0: never) is run in overlapping windows;
    standardisation uses the whole image's statistics, as the untiled path does.
    `preprocessing`: the input preprocessing the weights expect (nairstd.data.preprocess; None:
    ours). The map is always resized back with our bilinear resize.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    prep = checkpoint_preprocessing({"preprocessing": preprocessing})
    net = unwrap(model)
    h, w = image.shape
    if protocol == RESIZE256:
        x = resize_input(image, (size, size), prep["resize"])
        x = normalize_image(x, prep["normalize"])
        return resize_image(_forward_prob(net, x, device), (h, w)).astype(np.float32)
    if prep["normalize"] == "standardize":
        x = _standardized(image.astype(np.float32, copy=False))
    else:
        x = normalize_image(image, prep["normalize"])
    if not tile or (h <= tile and w <= tile):
        return _forward_prob(net, x, device).astype(np.float32, copy=False)
    prob = np.empty((h, w), np.float32)
    for wy, wx, cy, cx in tile_windows(h, w, tile, margin):
        prob[wy][:, wx][cy, cx] = _forward_prob(net, x[wy, wx], device)[cy, cx]
    return prob


def classical_probability(
    method: Callable[[np.ndarray], np.ndarray], image: np.ndarray, protocol: str, size: int = 256
) -> np.ndarray:
    """Map of a training-free method, under the same protocols as the networks."""
    h, w = image.shape
    x = resize_image(image, (size, size)) if protocol == RESIZE256 else image
    prob = np.clip(method(x.astype(np.float32)), 0.0, 1.0).astype(np.float32)
    return resize_image(prob, (h, w)) if protocol == RESIZE256 else prob
