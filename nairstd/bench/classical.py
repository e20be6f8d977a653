"""Classical-method speed: `python -m nairstd bench classical [--n 3]` (seconds per image)."""

from __future__ import annotations

import time

import numpy as np

from nairstd.baselines import CLASSICAL


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
