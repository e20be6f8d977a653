"""Anti-aliased primitives painted far to near onto a radiance map, with an element-kind map.

The clutter scenes (`nairstd.data.synthetic.scene`) are drawn as a painter draws: the farthest
structure first, each nearer one over it, so occlusion comes out right without a depth buffer.
Every primitive covers a pixel by the fraction of the pixel inside the shape (boxes exactly;
segments, ellipses and polygons by a one-pixel ramp across the edge), so poles and lamp heads a
pixel or two wide keep their sub-pixel position and size: snapped to the grid they would be
jagged, full-contrast cues that a real optic never shows. The kind map records which element
covers each pixel (coverage >= 0.5), so a detection can be traced to the structure it sits on.

Pixel (r, c) covers [r, r + 1) x [c, c + 1); its centre is (r + 0.5, c + 0.5).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

# A colour: one radiance for the whole shape, or a function of the window's pixel indices
# (rows as a column, cols as a row), e.g. a facade temperature plus a texture read at them.
Value = float | Callable[[np.ndarray, np.ndarray], np.ndarray]


class Canvas:
    """Radiance (float32, arbitrary units: the sensor model maps them to counts) and kind maps."""

    def __init__(self, value: np.ndarray) -> None:
        self.value = np.asarray(value, np.float32)
        self.kind = np.zeros(self.value.shape, np.uint8)
        self.h, self.w = self.value.shape

    def _window(
        self, y0: float, y1: float, x0: float, x1: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Row and column indices of the pixels the box [y0, y1) x [x0, x1) touches, or None."""
        r0, r1 = max(0, math.floor(y0)), min(self.h, math.ceil(y1))
        c0, c1 = max(0, math.floor(x0)), min(self.w, math.ceil(x1))
        if r1 <= r0 or c1 <= c0:
            return None
        return np.arange(r0, r1), np.arange(c0, c1)

    def paint(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        cover: np.ndarray,
        value: Value,
        kind: int,
        alpha: float = 1.0,
    ) -> None:
        """Blend `value` over the window by `alpha` x `cover` (in [0, 1]: `alpha` < 1 for see-through
        structures such as a lattice mast); mark `kind` where that weight is >= 0.5."""
        win = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
        if callable(value):
            value = value(rows[:, None], cols[None, :])
        if alpha != 1.0:
            cover = cover * np.float32(alpha)
        here = self.value[win]
        here += cover * (value - here)
        if kind:
            self.kind[win][cover >= 0.5] = kind

    def box(
        self,
        y0: float,
        y1: float,
        x0: float,
        x1: float,
        value: Value,
        kind: int = 0,
        alpha: float = 1.0,
    ) -> None:
        """Axis-aligned box, exact area coverage."""
        idx = self._window(y0, y1, x0, x1)
        if idx is None:
            return
        rows, cols = idx
        cy = np.clip(np.minimum(rows + 1.0, y1) - np.maximum(rows, y0), 0.0, 1.0)
        cx = np.clip(np.minimum(cols + 1.0, x1) - np.maximum(cols, x0), 0.0, 1.0)
        cover = (cy[:, None] * cx[None, :]).astype(np.float32)
        self.paint(rows, cols, cover, value, kind, alpha)

    def segment(
        self,
        p: Sequence[float],
        q: Sequence[float],
        width: float,
        value: Value,
        kind: int = 0,
        alpha: float = 1.0,
    ) -> None:
        """Line segment from p to q ((row, col)) of `width` px. A segment thinner than a pixel
        covers it by its width (a 0.3 px wire dims the pixels it crosses to 30 %)."""
        half = max(width, 1.0) / 2 + 1
        y0, y1 = min(p[0], q[0]) - half, max(p[0], q[0]) + half
        x0, x1 = min(p[1], q[1]) - half, max(p[1], q[1]) + half
        idx = self._window(y0, y1, x0, x1)
        if idx is None:
            return
        rows, cols = idx
        yy, xx = rows[:, None] + 0.5, cols[None, :] + 0.5
        dy, dx = q[0] - p[0], q[1] - p[1]
        length2 = dy * dy + dx * dx + 1e-12
        t = np.clip(((yy - p[0]) * dy + (xx - p[1]) * dx) / length2, 0.0, 1.0)
        dist = np.hypot(yy - p[0] - t * dy, xx - p[1] - t * dx)
        cover = np.clip(max(width, 1.0) / 2 + 0.5 - dist, 0.0, 1.0) * min(width, 1.0)
        self.paint(rows, cols, cover.astype(np.float32), value, kind, alpha)

    def ellipse(
        self,
        cy: float,
        cx: float,
        ry: float,
        rx: float,
        value: Value,
        kind: int = 0,
        alpha: float = 1.0,
    ) -> None:
        """Axis-aligned ellipse with radii (ry, rx) px; below a pixel it dims as its area."""
        ey, ex = max(ry, 0.5), max(rx, 0.5)
        idx = self._window(cy - ey - 1, cy + ey + 1, cx - ex - 1, cx + ex + 1)
        if idx is None:
            return
        rows, cols = idx
        u = (rows[:, None] + 0.5 - cy) / ey
        v = (cols[None, :] + 0.5 - cx) / ex
        r = np.sqrt(u * u + v * v)
        cover = np.clip((1.0 - r) * min(ey, ex) + 0.5, 0.0, 1.0)
        cover *= min(1.0, ry * rx / (ey * ex))  # sub-pixel ellipses keep their area
        self.paint(rows, cols, cover.astype(np.float32), value, kind, alpha)

    def polygon(
        self,
        ys: Sequence[float],
        xs: Sequence[float],
        value: Value,
        kind: int = 0,
        alpha: float = 1.0,
    ) -> None:
        """Convex polygon (vertices in either order) by the signed distance to its edges."""
        ys_a, xs_a = np.asarray(ys, float), np.asarray(xs, float)
        idx = self._window(ys_a.min() - 1, ys_a.max() + 1, xs_a.min() - 1, xs_a.max() + 1)
        if idx is None:
            return
        rows, cols = idx
        yy, xx = rows[:, None] + 0.5, cols[None, :] + 0.5
        cy, cx = ys_a.mean(), xs_a.mean()
        inside = np.full((rows.size, cols.size), np.inf)
        for i in range(len(ys_a)):
            ay, ax = ys_a[i], xs_a[i]
            by, bx = ys_a[(i + 1) % len(ys_a)], xs_a[(i + 1) % len(xs_a)]
            ny, nx = -(bx - ax), by - ay  # a normal of the edge
            norm = math.hypot(ny, nx)
            if norm < 1e-9:
                continue
            ny, nx = ny / norm, nx / norm
            if (cy - ay) * ny + (cx - ax) * nx < 0:  # point it inwards
                ny, nx = -ny, -nx
            inside = np.minimum(inside, (yy - ay) * ny + (xx - ax) * nx)
        cover = np.clip(inside + 0.5, 0.0, 1.0).astype(np.float32)
        if cover.any():
            self.paint(rows, cols, cover, value, kind, alpha)
