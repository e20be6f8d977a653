"""Synthetic targets and hard negatives placed on a background: one image, its mask and info."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from nairstd.data.synthetic.backgrounds import _background, _sensor_noise
from nairstd.data.synthetic.presets import SyntheticConfig
from nairstd.grid import EIGHT_CONNECTED


# --------------------------------------------------------------------------------------------------
# Targets and hard negatives
# --------------------------------------------------------------------------------------------------
def _sample_area(rng: np.random.Generator, config: SyntheticConfig) -> float:
    lo, hi = config.target_area[0], config.area_upper
    mu, sigma = np.log(config.area_median), config.area_log_sigma
    for _ in range(64):
        a = float(np.exp(rng.normal(mu, sigma)))
        if lo <= a <= hi:
            return a
    return float(rng.uniform(lo, hi))


def _blob(
    cy: float, cx: float, su: float, sv: float, theta: float, extent: float
) -> tuple[int, int, np.ndarray]:
    """Elliptical Gaussian (peak 1 at the continuous centre) sampled on an integer patch;
    returns (row0, col0, values)."""
    r = int(np.ceil(extent * max(su, sv))) + 1
    y0, x0 = int(np.floor(cy)) - r, int(np.floor(cx)) - r
    yy = np.arange(y0, y0 + 2 * r + 2, dtype=np.float64)[:, None] - cy
    xx = np.arange(x0, x0 + 2 * r + 2, dtype=np.float64)[None, :] - cx
    c, s = np.cos(theta), np.sin(theta)
    u = xx * c + yy * s
    v = -xx * s + yy * c
    return y0, x0, np.exp(-0.5 * ((u / su) ** 2 + (v / sv) ** 2))


def _segment_profile(
    y0: int, x0: int, h: int, w: int, p: np.ndarray, q: np.ndarray, width: float
) -> np.ndarray:
    """Gaussian-profile line segment from p to q (row, col) on the patch [y0:y0+h, x0:x0+w]."""
    yy = np.arange(y0, y0 + h, dtype=np.float64)[:, None]
    xx = np.arange(x0, x0 + w, dtype=np.float64)[None, :]
    d = q - p
    length2 = float(d @ d) + 1e-12
    t = np.clip(((yy - p[0]) * d[0] + (xx - p[1]) * d[1]) / length2, 0.0, 1.0)
    dist2 = (yy - p[0] - t * d[0]) ** 2 + (xx - p[1] - t * d[1]) ** 2
    taper = np.sin(np.pi * np.clip(t, 0.02, 0.98)) ** 0.5  # fade at both ends
    return np.exp(-0.5 * dist2 / width**2) * taper


def _local_stats(img: np.ndarray, cy: float, cx: float, r: int) -> tuple[float, float]:
    n = img.shape[0]
    ys = slice(max(0, int(cy) - r), min(n, int(cy) + r + 1))
    xs = slice(max(0, int(cx) - r), min(n, int(cx) + r + 1))
    win = img[ys, xs]
    return float(win.mean()), float(win.std())


def _hard_negative(
    rng: np.random.Generator, n: int, canvas: np.ndarray, config: SyntheticConfig
) -> tuple[int, int, np.ndarray, str]:
    """One hard negative: (row0, col0, intensity patch, kind). Shapes are never target-like."""
    kind = str(rng.choice(["streak", "large_blob", "edge_glint"]))
    m = 4
    if kind == "large_blob":
        # Several times the largest target: sigma 5–12 px, flat-topped, > 250 px above 20% peak.
        su = rng.uniform(5.0, 12.0)
        sv = su / rng.uniform(1.0, 2.0)
        cy, cx = rng.uniform(m, n - m, size=2)
        y0, x0, g = _blob(cy, cx, su, sv, rng.uniform(0, np.pi), 3.0)
        g = np.minimum(g * 1.6, 1.0)  # flat top
    else:
        for _ in range(100):  # keep every vertex inside the image
            length = rng.uniform(18.0, 70.0) if kind == "streak" else rng.uniform(10.0, 35.0)
            width = rng.uniform(0.5, 1.2)
            theta = rng.uniform(0, 2 * np.pi)
            p = rng.uniform(m, n - m, size=2)
            q = p + length * np.array([np.sin(theta), np.cos(theta)])
            pts = [p, q]
            if kind == "edge_glint":  # L-shaped bright corner (building edge in the sun)
                side = rng.uniform(10.0, 30.0) * rng.choice([-1.0, 1.0])
                pts.append(q + side * np.array([np.cos(theta), -np.sin(theta)]))
            if all(m <= c <= n - 1 - m for pt in pts for c in pt):
                break
        pts_arr = np.array(pts)
        lo = np.floor(pts_arr.min(axis=0) - 4 * width - 2).astype(int)
        hi = np.ceil(pts_arr.max(axis=0) + 4 * width + 2).astype(int)
        y0, x0 = int(lo[0]), int(lo[1])
        h, w = int(hi[0] - lo[0]), int(hi[1] - lo[1])
        g = np.zeros((h, w))
        for a, b in zip(pts[:-1], pts[1:]):
            g = np.maximum(g, _segment_profile(y0, x0, h, w, a, b, width))
    cy, cx = y0 + g.shape[0] / 2, x0 + g.shape[1] / 2
    mean, std = _local_stats(canvas, cy, cx, max(g.shape) // 2 + 10)
    scr = np.exp(rng.uniform(*np.log(config.scr_range)))
    amp = min(max(scr * max(std, 0.004) / 0.6, config.min_contrast), 1.1 - mean)
    return y0, x0, amp * g, kind


def _regions(
    shape: tuple[int, int], y0: int, x0: int, patch_shape: tuple[int, int]
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """(destination, source) slices of a patch at (y0, x0) clipped to an image of `shape`."""
    h, w = shape
    ys0, xs0 = max(0, y0), max(0, x0)
    ys1, xs1 = min(h, y0 + patch_shape[0]), min(w, x0 + patch_shape[1])
    ys1, xs1 = max(ys0, ys1), max(xs0, xs1)
    dst = (slice(ys0, ys1), slice(xs0, xs1))
    src = (slice(ys0 - y0, ys1 - y0), slice(xs0 - x0, xs1 - x0))
    return dst, src


def _paste(dst: np.ndarray, y0: int, x0: int, patch: np.ndarray, op: str = "add") -> None:
    """Add (or OR) a patch into dst, clipping at the borders."""
    d, s = _regions(dst.shape, y0, x0, patch.shape)
    if op == "add":
        dst[d] += patch[s]
    else:
        dst[d] |= patch[s]


def _overlaps(occ: np.ndarray, y0: int, x0: int, support: np.ndarray) -> bool:
    d, s = _regions(occ.shape, y0, x0, support.shape)
    return bool((occ[d] & support[s]).any())


def _n_targets(rng: np.random.Generator, config: SyntheticConfig) -> int:
    lo, hi = config.targets_per_image
    k = np.arange(lo, hi + 1)
    p = config.target_count_decay ** (k - lo).astype(np.float64)
    return int(rng.choice(k, p=p / p.sum()))


def _place_targets(
    rng: np.random.Generator,
    n: int,
    n_targets: int,
    canvas: np.ndarray,
    config: SyntheticConfig,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]], np.ndarray]:
    """Place `n_targets` non-overlapping blobs; returns (intensity layer, mask, target records,
    occupancy map of the targets' footprints, `gap` px around each mask's bounding box)."""
    thr = config.mask_threshold
    k_area = 2.0 * np.pi * np.log(1.0 / thr)  # continuous area of the thresholded Gaussian
    gap = 3  # free pixels kept between a target and any other object
    layer = np.zeros((n, n))
    mask = np.zeros((n, n), dtype=bool)
    occ = np.zeros((n, n), dtype=bool)
    targets: list[dict[str, Any]] = []
    amin, amax = config.target_area[0], config.area_upper
    margin = config.border_margin
    tries = 0
    while len(targets) < n_targets:
        tries += 1
        if tries > 400 * n_targets:
            raise RuntimeError(
                f"could not place {n_targets} targets in a {n}x{n} image; "
                "reduce targets_per_image / target_area or increase image_size"
            )
        area = _sample_area(rng, config)
        aspect = rng.uniform(*config.target_aspect)
        s_geo = np.sqrt(area / k_area)
        su, sv = s_geo * np.sqrt(aspect), s_geo / np.sqrt(aspect)
        theta = rng.uniform(0, np.pi)
        reach = int(np.ceil(np.sqrt(2 * np.log(1 / thr)) * su)) + 1
        lo_pos, hi_pos = margin + reach, n - 1 - margin - reach
        if hi_pos <= lo_pos:
            continue
        cy, cx = rng.uniform(lo_pos, hi_pos, size=2)
        y0, x0, g = _blob(cy, cx, su, sv, theta, extent=3.0)
        g = g / g.max()  # sampled peak = 1
        m = g >= thr
        a = int(m.sum())
        if not amin <= a <= amax:
            continue
        rows, cols = np.nonzero(m)
        by0, by1 = y0 + rows.min(), y0 + rows.max() + 1
        bx0, bx1 = x0 + cols.min(), x0 + cols.max() + 1
        if by0 < margin or bx0 < margin or by1 > n - margin or bx1 > n - margin:
            continue
        fy0, fy1 = max(0, by0 - gap), min(n, by1 + gap)
        fx0, fx1 = max(0, bx0 - gap), min(n, bx1 + gap)
        if occ[fy0:fy1, fx0:fx1].any():
            continue
        # Amplitude from the desired SCR: mean over the mask = SCR × local std of the background.
        bg_mean, bg_std = _local_stats(canvas, cy, cx, reach + 10)
        scr = float(np.exp(rng.uniform(*np.log(config.scr_range))))
        peak = scr * max(bg_std, 1.0 / 255) / float(g[m].mean())
        peak = max(min(peak, 1.15 - bg_mean), config.min_contrast)  # may saturate, never vanish
        _paste(layer, y0, x0, peak * g * (g >= 0.01))
        _paste(mask, y0, x0, m, op="or")
        occ[fy0:fy1, fx0:fx1] = True
        targets.append(
            {"area": a, "scr_target": scr, "bbox": [int(by0), int(bx0), int(by1), int(bx1)]}
        )
    return layer, mask, targets, occ


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image `index` (= `SeedSequence(seed).spawn(index + 1)[index]`)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def generate_image(
    rng: np.random.Generator, config: SyntheticConfig | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One synthetic image.

    Returns ``(image, mask, info)``: ``image`` uint8 (H, W); ``mask`` bool (H, W) whose 8-connected
    components are exactly the targets; ``info`` with ``targets`` (list of dicts: ``centroid``
    (row, col) of the mask component, ``area`` px, ``scr`` achieved in the 8-bit image,
    ``scr_target`` drawn, ``bbox`` [row0, col0, row1, col1)), ``background`` (kinds used),
    ``hard_negatives`` (kind and centroid of each) and ``noise_std``.
    """
    config = config or SyntheticConfig()
    n = config.image_size
    bg, kinds = _background(rng, n, config)
    noise = _sensor_noise(rng, n, config)
    canvas = bg + noise
    noise_std = float(noise.std())

    n_targets = _n_targets(rng, config)
    for _ in range(20):
        layer, mask, targets, occupied = _place_targets(rng, n, n_targets, canvas, config)
        labels, n_comp = ndimage.label(mask, structure=EIGHT_CONNECTED)
        if n_comp == n_targets:
            break
    else:  # pragma: no cover - the placement gap makes merging impossible in practice
        raise RuntimeError("target masks kept merging; check the configuration")

    # Hard negatives: bright clutter kept (with a 3 px gap) away from every target.
    negatives: list[dict[str, Any]] = []
    if config.hard_negative_count[1] > 0 and rng.random() < config.hard_negative_prob:
        lo, hi = config.hard_negative_count
        for _ in range(int(rng.integers(lo, hi + 1))):
            for _attempt in range(30):
                y0, x0, patch, kind = _hard_negative(rng, n, canvas, config)
                support = ndimage.binary_dilation(
                    patch > 0.05 * patch.max(), EIGHT_CONNECTED, iterations=3, border_value=0
                )
                if not _overlaps(occupied, y0, x0, support):
                    break
            else:
                continue  # no room left: skip this hard negative
            _paste(canvas, y0, x0, patch)
            _paste(occupied, y0, x0, support, op="or")
            d, s = _regions(canvas.shape, y0, x0, patch.shape)
            vis = patch[s]
            rows, cols = np.nonzero(vis >= 0.5 * patch.max())
            if rows.size == 0:
                rows, cols = np.nonzero(vis > 0)
            negatives.append(
                {
                    "kind": kind,
                    "centroid": [float(d[0].start + rows.mean()), float(d[1].start + cols.mean())],
                }
            )

    img = np.clip(canvas + layer, 0.0, 1.0)
    image = np.rint(img * 255.0).astype(np.uint8)

    # Per-target records from the final 8-bit image (achieved SCR against a local ring).
    img_f = image.astype(np.float64)
    footprint = np.zeros((n, n), dtype=bool)
    for t in targets:
        r0, c0, r1, c1 = t["bbox"]
        footprint[max(0, r0 - 3) : r1 + 3, max(0, c0 - 3) : c1 + 3] = True
    records = []
    for t in targets:
        r0, c0, r1, c1 = t["bbox"]
        comp = labels[r0:r1, c0:c1]
        lab = np.bincount(comp[comp > 0]).argmax()
        m = comp == lab
        rows, cols = np.nonzero(m)
        ys = slice(max(0, r0 - 10), min(n, r1 + 10))
        xs = slice(max(0, c0 - 10), min(n, c1 + 10))
        ring = img_f[ys, xs][~footprint[ys, xs]]
        ring_std = max(float(ring.std()), 1.0) if ring.size else 1.0
        ring_mean = float(ring.mean()) if ring.size else 0.0
        scr = (float(img_f[r0:r1, c0:c1][m].mean()) - ring_mean) / ring_std
        records.append(
            {
                "centroid": [float(r0 + rows.mean()), float(c0 + cols.mean())],
                "area": int(m.sum()),
                "scr": round(scr, 3),
                "scr_target": round(t["scr_target"], 3),
                "bbox": t["bbox"],
            }
        )
    info = {
        "background": kinds,
        "targets": records,
        "hard_negatives": negatives,
        "noise_std": round(noise_std, 5),
    }
    return image, mask, info


def generate_images(
    config: SyntheticConfig, indices: range | list[int] | None = None
) -> list[tuple[np.ndarray, np.ndarray, dict[str, Any]]]:
    """Images `indices` (default: all `config.n_images`) of a config; image i is independent of
    which other images are generated."""
    indices = range(config.n_images) if indices is None else indices
    return [generate_image(image_rng(config.seed, i), config) for i in indices]
