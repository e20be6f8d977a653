"""Classical (model-driven, training-free) IRSTD baselines, numpy / scipy only.

Every method is ``method(image: float32 (H, W) in [0, 1], **params) -> float32 (H, W) in [0, 1)``,
a probability-like map whose 0.5 level is the method paper's adaptive threshold mean + k std of its
raw response (`common.to_probability`), so the evaluation's "> 0.5" binarisation (SPEC §6) is the
paper's segmentation. ``<method>_response`` functions return the raw responses.

    from nairstd.baselines.classical import CLASSICAL
    prob = CLASSICAL["pstnn"](image)          # (H, W) float32

Speed (s per 256 x 256 image, `benchmark_classical`, shared 2-core CPU): tophat ~0.005,
mpcm ~0.007, pstnn ~0.035, nram ~0.7 (its 2500 x 484 patch-image SVDs). The low-rank solvers pin
numpy's OpenBLAS to one thread while they run (`common.blas_threads`): on a shared CPU
multi-threaded OpenBLAS spin-waits, and NRAM took 20 s per image with 2 threads.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from .common import to_probability
from .contrast_mpcm import mpcm, mpcm_response
from .lowrank_nram import nram, nram_response
from .lowrank_pstnn import pstnn, pstnn_response
from .morph_tophat import tophat, tophat_response

CLASSICAL: dict[str, Callable[..., np.ndarray]] = {
    "tophat": tophat,
    "mpcm": mpcm,
    "pstnn": pstnn,
    "nram": nram,
}


def run_classical(name: str, image: np.ndarray, **params) -> np.ndarray:
    """Run classical method `name` on one image; float32 output of the image's shape."""
    if name not in CLASSICAL:
        raise KeyError(f"unknown classical method {name!r}; choose from {sorted(CLASSICAL)}")
    return CLASSICAL[name](np.asarray(image, dtype=np.float32), **params).astype(np.float32)


def benchmark_classical(
    n: int = 3, size: int = 256, methods: list[str] | None = None, seed: int = 0
) -> dict[str, float]:
    """Seconds per `size` x `size` image of each classical method (mean over `n` images).

    Images: a smooth random background with noise and two small bright blobs (the solvers' cost
    depends on the content only through their iteration counts).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        bg = 0.3 + 0.2 * np.sin(2 * np.pi * (rng.random() + xx * rng.uniform(0.5, 2))) * yy
        img = bg + 0.02 * rng.standard_normal((size, size))
        for _b in range(2):
            cy, cx = rng.integers(10, size - 10, 2)
            img += 0.3 * np.exp(
                -((np.arange(size)[:, None] - cy) ** 2 + (np.arange(size) - cx) ** 2) / 4.0
            )
        images.append(np.clip(img, 0, 1).astype(np.float32))
    out: dict[str, float] = {}
    for name in methods or list(CLASSICAL):
        t0 = time.perf_counter()
        for img in images:
            CLASSICAL[name](img)
        out[name] = (time.perf_counter() - t0) / n
    return out


__all__ = [
    "CLASSICAL",
    "benchmark_classical",
    "mpcm",
    "mpcm_response",
    "nram",
    "nram_response",
    "pstnn",
    "pstnn_response",
    "run_classical",
    "to_probability",
    "tophat",
    "tophat_response",
]
