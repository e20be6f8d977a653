"""Synthetic-data generator speed: `python -m nairstd bench synthetic [--n 200]`.

numpy's FFT and scipy.ndimage run single-threaded; pin a core with `taskset -c 0`.
"""

from __future__ import annotations

import time

from nairstd.data.synthetic import SyntheticConfig, generate_image, image_rng


def generator_rate(n: int = 200, config: SyntheticConfig | None = None) -> float:
    """Images per second of `generate_image` (default config, 256×256) in this process."""
    config = config or SyntheticConfig()
    generate_image(image_rng(config.seed, 10**6), config)  # warm caches
    t0 = time.perf_counter()
    for i in range(n):
        generate_image(image_rng(config.seed, i), config)
    return n / (time.perf_counter() - t0)


def format_rate(rate: float, config: SyntheticConfig | None = None) -> str:
    """One line: images/s at the config's image size."""
    size = (config or SyntheticConfig()).image_size
    return f"synthetic generator: {rate:.1f} images/s ({size}x{size}, 1 thread)"
