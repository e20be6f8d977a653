"""The infrared sensor between the scene and the file: optics, the detector's own artefacts,
and the conversion to 8-bit (gain-controlled) or 16-bit (raw counts) pixels.

In order: the optics blur the radiance (a Gaussian point-spread function, sigma 0.4-0.9 px, a
little more in defocused frames); vignetting dims the corners; the focal-plane array adds its
fixed pattern (a per-column and a smaller per-row offset, a low-frequency non-uniformity) and
temporal noise; a few pixels are hot (a fixed excess, a third of them stuck at full scale) or
dead (1.5 per million each, about 3 in a 1920x1080 frame; they are not replaced, as many
cameras leave some). Then the frame is written as a 16-bit PNG holding raw
counts (an offset of a few thousand, a few thousand counts across the scene: what a radiometric
camera's raw output looks like) or as an 8-bit PNG after automatic gain control: a linear stretch
between low and high percentiles, or plateau histogram equalisation, the usual AGC of thermal
cameras, which lifts the contrast of the mid-tones where the structures are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from nairstd.data.synthetic.backgrounds import _powerlaw
from nairstd.data.synthetic.structures import KIND


@dataclass(frozen=True)
class SensorConfig:
    """Ranges the sensor of each frame is drawn from (radiance units: the scene's air ~0.4)."""

    blur: tuple[float, float] = (0.4, 0.9)  # optics PSF sigma, px
    defocus_p: float = 0.15  # probability of extra blur
    defocus: tuple[float, float] = (0.3, 0.6)  # its sigma, px (added in quadrature)
    vignetting: tuple[float, float] = (0.0, 0.25)  # fractional loss at the corners
    noise: tuple[float, float] = (0.003, 0.012)  # temporal noise std
    column_noise: tuple[float, float] = (0.2, 1.2)  # column offsets std, x the temporal std
    row_noise: tuple[float, float] = (0.0, 0.5)  # row offsets std, x the temporal std
    nonuniformity: tuple[float, float] = (0.0, 0.02)  # low-frequency offset std
    hot_pixels: float = 1.5e-6  # per pixel (1920x1080: ~3; 640x512: ~0.5)
    dead_pixels: float = 1.5e-6
    plateau_p: float = 0.5  # 8-bit frames: probability of plateau equalisation (else linear)


def optics(rng: np.random.Generator, radiance: np.ndarray, config: SensorConfig) -> tuple:
    """(blurred radiance, PSF sigma in px)."""
    sigma = float(rng.uniform(*config.blur))
    if rng.random() < config.defocus_p:
        sigma = float(np.hypot(sigma, rng.uniform(*config.defocus)))
    return ndimage.gaussian_filter(radiance, sigma, mode="nearest"), sigma


def detector(
    rng: np.random.Generator, signal: np.ndarray, kind: np.ndarray, config: SensorConfig
) -> tuple[np.ndarray, dict[str, Any]]:
    """The focal-plane array's artefacts on the blurred radiance (in place on a copy); marks hot
    and dead pixels in `kind`. Returns (signal, what was drawn)."""
    h, w = signal.shape
    out = signal.astype(np.float32, copy=True)
    v = float(rng.uniform(*config.vignetting))
    if v > 0:
        yy = (np.arange(h, dtype=np.float32)[:, None] + 0.5 - h / 2) / (h / 2)
        xx = (np.arange(w, dtype=np.float32)[None, :] + 0.5 - w / 2) / (w / 2)
        out *= 1.0 - np.float32(v / 2) * (yy * yy + xx * xx)
    noise = float(rng.uniform(*config.noise))
    nu = float(rng.uniform(*config.nonuniformity))
    if nu > 0:
        out += np.float32(nu) * _powerlaw(rng, (h, w), 4.0).astype(np.float32)
    cols = noise * float(rng.uniform(*config.column_noise))
    rows = noise * float(rng.uniform(*config.row_noise))
    out += rng.normal(0.0, cols, (1, w)).astype(np.float32)
    out += rng.normal(0.0, rows, (h, 1)).astype(np.float32)
    out += rng.normal(0.0, noise, (h, w)).astype(np.float32)
    n_hot = int(rng.poisson(config.hot_pixels * h * w))
    n_dead = int(rng.poisson(config.dead_pixels * h * w))
    hot = (rng.integers(0, h, n_hot), rng.integers(0, w, n_hot))
    dead = (rng.integers(0, h, n_dead), rng.integers(0, w, n_dead))
    # A hot pixel's excess dark current varies: most read a fixed amount above the scene, a
    # third are stuck at full scale.
    out[hot] += rng.uniform(0.1, 1.0, n_hot).astype(np.float32)
    stuck = rng.random(n_hot) < 1 / 3
    info = {
        "psf_sigma": None,
        "vignetting": round(v, 4),
        "noise_std": round(noise, 5),
        "column_std": round(cols, 5),
        "row_std": round(rows, 5),
        "hot_pixels": [[int(r), int(c)] for r, c in zip(*hot)],
        "stuck_hot": [[int(r), int(c)] for r, c, s in zip(*hot, stuck) if s],
        "dead_pixels": [[int(r), int(c)] for r, c in zip(*dead)],
    }
    kind[hot] = KIND["hot_pixel"]
    kind[dead] = KIND["dead_pixel"]
    return out, info


def _stuck(image: np.ndarray, info: dict[str, Any], high: int) -> np.ndarray:
    for r, c in info["stuck_hot"]:
        image[r, c] = high
    for r, c in info["dead_pixels"]:
        image[r, c] = 0
    return image


def to_counts(
    rng: np.random.Generator,
    signal: np.ndarray,
    bits: int,
    info: dict[str, Any],
    config: SensorConfig,
) -> tuple[np.ndarray, dict[str, Any]]:
    """uint16 raw counts (bits 16) or uint8 after AGC (bits 8); stuck pixels at full scale / 0.
    Returns (image, how it was mapped)."""
    if bits == 16:
        offset = float(rng.uniform(2000.0, 12000.0))
        gain = float(rng.uniform(2000.0, 8000.0))  # counts per radiance unit
        counts = np.rint(offset + gain * signal)
        image = np.clip(counts, 0, 65535).astype(np.uint16)
        full = int(rng.choice([16383, 65535]))  # 14-bit cameras saturate at 16383
        return _stuck(image, info, full), {"mapping": "raw", "offset": offset, "gain": gain}
    if bits != 8:
        raise ValueError(f"bit depth must be 8 or 16, got {bits}")
    sub = signal[::2, ::2]
    lo, hi = np.percentile(sub, [0.5, 99.9])
    hi = max(hi, lo + 1e-6)
    if rng.random() < config.plateau_p:
        bins = 1024
        hist, edges = np.histogram(np.clip(signal, lo, hi), bins=bins, range=(lo, hi))
        plateau = max(1.0, float(rng.uniform(0.3, 3.0)) * signal.size / bins)
        cdf = np.cumsum(np.minimum(hist, plateau)).astype(np.float64)
        cdf /= cdf[-1]
        mix = float(rng.uniform(0.6, 1.0))  # a little of the linear map keeps the ordering smooth
        lut = mix * cdf + (1 - mix) * np.linspace(0.0, 1.0, bins)
        centres = 0.5 * (edges[:-1] + edges[1:])
        mapped = np.interp(signal, centres, lut)
        how = {"mapping": "plateau", "plateau": round(plateau, 1), "mix": round(mix, 3)}
    else:
        mapped = (signal - lo) / (hi - lo)
        how = {"mapping": "linear"}
    image = np.clip(np.rint(mapped * 255.0), 0, 255).astype(np.uint8)
    return _stuck(image, info, 255), how
