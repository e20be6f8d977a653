"""Classical (model-driven, training-free) IRSTD baselines, numpy / scipy only.

Every method is ``method(image: float32 (H, W) in [0, 1], **params) -> float32 (H, W) in [0, 1)``,
a probability-like map whose 0.5 level is the method paper's adaptive threshold mean + k std of its
raw response (`common.to_probability`), so the evaluation's "> 0.5" binarisation (SPEC §6) is the
paper's segmentation. ``<method>_response`` functions return the raw responses.

    from nairstd.baselines.classical import CLASSICAL
    prob = CLASSICAL["pstnn"](image)          # (H, W) float32

Speed (s per 256 x 256 image, `python -m nairstd bench classical`, shared 2-core CPU):
tophat ~0.005, mpcm ~0.007, pstnn ~0.035, nram ~0.7 (its 2500 x 484 patch-image SVDs). The
low-rank solvers pin numpy's OpenBLAS to one thread while they run (`common.blas_threads`): on a
shared CPU multi-threaded OpenBLAS spin-waits, and NRAM took 20 s per image with 2 threads.
"""

from __future__ import annotations

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


__all__ = [
    "CLASSICAL",
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
