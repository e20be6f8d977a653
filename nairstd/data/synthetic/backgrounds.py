"""Synthetic clutter: power-law noise fields and sky / sea / ground backgrounds, sensor noise."""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from nairstd.data.synthetic.presets import SyntheticConfig


# --------------------------------------------------------------------------------------------------
# Noise fields
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _freq_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    fy = np.fft.fftfreq(h).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(w).astype(np.float32)[None, :]
    return fy * fy, fx * fx


def _powerlaw(
    rng: np.random.Generator, shape: tuple[int, int], beta: float, anisotropy: float = 1.0
) -> np.ndarray:
    """Zero-mean, unit-std 1/f^beta (power spectrum) noise; `anisotropy` > 1 stretches structures
    horizontally. Single precision FFT (4x faster than double; the output is 8-bit anyway)."""
    h, w = shape
    fy2, fx2 = _freq_grid(h, w)
    f2 = fy2 + fx2 * np.float32(anisotropy * anisotropy)
    f2[0, 0] = 1.0
    amp = f2 ** np.float32(-beta / 4.0)
    amp[0, 0] = 0.0
    spec = rng.standard_normal((*amp.shape, 2), dtype=np.float32).view(np.complex64)[..., 0]
    spec *= amp
    out = np.fft.irfft2(spec, s=shape).astype(np.float64)
    out -= out.mean()
    std = out.std()
    return out / std if std > 0 else out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _coords(n: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(n, dtype=np.float64)[:, None]
    x = np.arange(n, dtype=np.float64)[None, :]
    return y, x


# --------------------------------------------------------------------------------------------------
# Backgrounds (arbitrary scale; the AGC stretch maps them to the display range afterwards)
# --------------------------------------------------------------------------------------------------
def _sky(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sky with clouds: a vertical gradient plus thresholded fractal (1/f^beta) cloud fields."""
    y, x = _coords(n)
    base = rng.uniform(-1.0, 1.0) * (y / n) + rng.uniform(-0.3, 0.3) * (x / n)
    clouds = _powerlaw(rng, (n, n), rng.uniform(3.0, 3.8))
    cover = rng.uniform(-1.0, 1.5)  # higher = clearer sky
    sharp = rng.uniform(1.0, 4.0)
    density = _sigmoid((clouds - cover) * sharp)
    detail = _powerlaw(rng, (n, n), rng.uniform(2.4, 3.0))
    amp = rng.uniform(0.4, 1.5) * rng.choice([1.0, 1.0, -1.0])  # clouds mostly warmer than sky
    texture = rng.uniform(0.05, 0.2)
    return base + amp * density * (1.0 + texture * detail) + 0.03 * detail


def _horizon_row(rng: np.random.Generator, n: int, rough: float) -> np.ndarray:
    """Row of the horizon for every column: tilted line, optionally rough (tree line, coast)."""
    x = np.arange(n, dtype=np.float64)
    h0 = rng.uniform(0.15, 0.6) * n
    slope = rng.uniform(-0.08, 0.08)
    row = h0 + slope * (x - n / 2)
    if rough > 0:
        prof = np.fft.irfft(
            (rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1))
            / np.maximum(np.arange(n // 2 + 1), 1) ** 1.2,
            n=n,
        )
        prof[:] -= prof.mean()
        row += rough * prof / (prof.std() + 1e-12)
    return row[None, :]


def _sea(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sea under a horizon: sky gradient above, horizontally stretched wave texture below whose
    scale and amplitude grow towards the bottom (perspective), with a brighter/darker water body."""
    y, x = _coords(n)
    hor = _horizon_row(rng, n, rough=0.0)
    sky = rng.uniform(-0.5, 0.5) * (y / n) + 0.15 * _powerlaw(rng, (n, n), 3.2)
    depth = np.clip((y - hor) / np.maximum(n - hor, 1.0), 0.0, 1.0)
    fine = _powerlaw(rng, (n, n), rng.uniform(1.6, 2.2), anisotropy=rng.uniform(4.0, 8.0))
    coarse = _powerlaw(rng, (n, n), rng.uniform(2.2, 2.8), anisotropy=rng.uniform(3.0, 6.0))
    waves = (1.0 - depth) * fine + depth * coarse
    wave_amp = rng.uniform(0.08, 0.35) * (0.35 + depth)
    sea = rng.uniform(-1.0, 0.3) + rng.uniform(-0.4, 0.4) * depth + wave_amp * waves
    if rng.random() < 0.4:  # sun glitter band: bright crests of the fine waves (elongated)
        cx = rng.uniform(0.2, 0.8) * n
        band = np.exp(-0.5 * ((x - cx) / rng.uniform(0.08, 0.2) / n) ** 2)
        sea = sea + rng.uniform(0.2, 0.6) * band * np.clip(fine - 1.0, 0.0, None) * (depth > 0)
    alpha = _sigmoid((y - hor) / rng.uniform(0.4, 1.5))
    return (1.0 - alpha) * sky + alpha * sea


def _ground(rng: np.random.Generator, n: int) -> np.ndarray:
    """Ground / urban clutter: piecewise-constant fields, blocky buildings, roads, terrain texture,
    blurred by the optics."""
    y, x = _coords(n)
    out = rng.uniform(0.08, 0.2) * _powerlaw(rng, (n, n), rng.uniform(2.0, 2.6))  # terrain
    # Fields: quantised low-frequency noise gives irregular flat regions with sharp borders.
    levels = rng.integers(3, 7)
    fields = np.floor(_powerlaw(rng, (n, n), 3.0) * levels / 2.0) / levels
    out += rng.uniform(0.3, 1.0) * fields
    # Buildings: axis-aligned blocks (not tiny, so that they never look like a point target).
    n_blocks = int(rng.integers(6, 30))
    hs = rng.integers(10, max(12, n // 4), size=n_blocks)
    ws = rng.integers(10, max(12, n // 4), size=n_blocks)
    ys = rng.integers(0, n - 10, size=n_blocks)
    xs = rng.integers(0, n - 10, size=n_blocks)
    vals = rng.normal(0.0, 0.5, size=n_blocks)
    for by, bx, bh, bw, v in zip(ys, xs, hs, ws, vals):
        out[by : by + bh, bx : bx + bw] += v
    # Roads: straight bands with a sharp-ish profile.
    for _ in range(int(rng.integers(0, 4))):
        theta = rng.uniform(0, np.pi)
        c = rng.uniform(0.2, 0.8) * n
        d = np.abs((x - n / 2) * np.cos(theta) + (y - n / 2) * np.sin(theta) + (n / 2 - c))
        width = rng.uniform(1.5, 5.0)
        out += rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.8) * _sigmoid((width - d) * 2.0)
    out = ndimage.gaussian_filter(out, rng.uniform(0.6, 1.4), mode="reflect")
    return out


_BACKGROUNDS = {"sky": _sky, "sea": _sea, "ground": _ground}


def _normalise(bg: np.ndarray) -> np.ndarray:
    sub = bg[::2, ::2]
    lo, hi = np.percentile(sub, [1.0, 99.0])
    return (bg - lo) / max(hi - lo, 1e-6)


def _background(
    rng: np.random.Generator, n: int, config: SyntheticConfig
) -> tuple[np.ndarray, list[str]]:
    kinds = list(config.background_kinds)
    p = None
    if config.background_weights is not None:
        w = np.asarray(config.background_weights, dtype=np.float64)
        p = w / w.sum()
    first = str(rng.choice(kinds, p=p))
    bg = _normalise(_BACKGROUNDS[first](rng, n))
    used = [first]
    others = [k for k in kinds if k != first]
    if others and rng.random() < config.background_mix_prob:
        second = str(rng.choice(others))
        bg2 = _normalise(_BACKGROUNDS[second](rng, n)) + rng.uniform(-0.3, 0.3)
        y, _ = _coords(n)
        if "sky" in (first, second):  # sky above a rough horizon (tree line, coast, skyline)
            top, bottom = (bg, bg2) if first == "sky" else (bg2, bg)
            hor = _horizon_row(rng, n, rough=rng.uniform(0.5, 6.0))
            alpha = _sigmoid((y - hor) / rng.uniform(0.5, 2.0))
            bg = (1.0 - alpha) * top + alpha * bottom
        else:  # irregular patches of the second kind
            alpha = _sigmoid((_powerlaw(rng, (n, n), 3.5) - rng.uniform(-0.5, 0.8)) * 4.0)
            bg = (1.0 - alpha) * bg + alpha * bg2
        used.append(second)
    # Automatic gain control: map the 1st..99th percentiles to a random display range.
    lo = rng.uniform(0.08, 0.3)
    hi = rng.uniform(max(lo + 0.25, 0.5), 0.8)
    sub = bg[::2, ::2]
    p1, p99 = np.percentile(sub, [1.0, 99.0])
    bg = lo + (bg - p1) * ((hi - lo) / max(p99 - p1, 1e-6))
    return bg, used


def _sensor_noise(rng: np.random.Generator, n: int, config: SyntheticConfig) -> np.ndarray:
    std = rng.uniform(*config.noise_std)
    noise = rng.standard_normal((n, n)) * std
    stripes = config.stripe_noise * std
    noise += rng.standard_normal((1, n)) * stripes  # column fixed-pattern noise
    noise += rng.standard_normal((n, 1)) * (0.5 * stripes)  # row stripes
    return noise
