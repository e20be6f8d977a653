"""Shared helpers of the classical (model-driven) baselines: the response -> probability mapping and
the patch-image / patch-tensor constructions of the low-rank methods.

Probability mapping (every classical method ends with it)
--------------------------------------------------------
Each method produces a raw target response r (a filter output, a contrast measure, the target
component of a low-rank + sparse decomposition). Its paper segments r with an adaptive threshold

    t = c + k * s,    c = mean(r), s = std(r)    (k is method specific, typically 2 - 5)

and we keep exactly that rule: with z = (r - c) / s the map is

    p = 1 - 2 ** (-z / k)  for z > 0,  p = 0 otherwise,

so p = 0.5 exactly at the paper's threshold (r = c + k s), 0.75 at c + 2 k s, 0.875 at c + 3 k s:
binarising p at > 0.5 (the evaluation's rule, SPEC §6) reproduces the paper's segmentation, while p
stays strictly increasing in r (no saturation: the strongest response is still the map's maximum
and ROC-style sweeps over p are sweeps over the paper's k). With ``robust=True``, c and s are the
median and 1.4826 * MAD instead (robust to the targets themselves); for sparse responses whose MAD
is ~0 (most pixels exactly 0, as in the RPCA target images) it falls back to mean / std.
A constant response (s = 0) maps to 0 everywhere.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

_EPS = 1e-12


@functools.cache
def _openblas_handles() -> tuple[tuple[object, object], ...]:
    """(set, get) thread-count functions of every OpenBLAS loaded in this process (Linux).

    numpy and scipy wheels bundle their own OpenBLAS; we find them in /proc/self/maps and look up
    the set/get symbols under their plain or scipy-openblas (64-bit-int suffixed) names.
    """
    try:
        with open("/proc/self/maps") as fh:
            paths = {ln.split()[-1] for ln in fh if "openblas" in ln.lower() and "/" in ln}
    except OSError:
        return ()
    handles = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in ("64_", "_64_", ""):
            prefix = "scipy_openblas" if suffix else "openblas"
            setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            if setter is not None and getter is not None:
                getter.restype = ctypes.c_int
                handles.append((setter, getter))
                break
    return tuple(handles)


@contextmanager
def blas_threads(n: int = 1) -> Iterator[None]:
    """Temporarily run numpy's BLAS / LAPACK on `n` threads (a no-op where not found).

    The low-rank solvers work on small matrices (484 x 484 Gram matrices, 40 x 40 slices): one
    thread is as fast, and on a shared or oversubscribed CPU multi-threaded OpenBLAS spin-waits -
    we measured NRAM at 20 s per 256^2 image with 2 threads vs 0.7 s with one.
    """
    handles = _openblas_handles()
    old = [int(get()) for _, get in handles]
    for setter, _ in handles:
        setter(int(n))
    try:
        yield
    finally:
        for (setter, _), k in zip(handles, old):
            setter(k)


def single_thread_blas(fn):
    """Decorator: run `fn` under `blas_threads(1)`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with blas_threads(1):
            return fn(*args, **kwargs)

    return wrapper


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate a grey (H, W) image and return it as float64 (the solvers' working precision)."""
    a = np.asarray(image)
    if a.ndim != 2:
        raise ValueError(f"expected a grey (H, W) image, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("image contains NaN or inf")
    return a.astype(np.float64, copy=False)


def to_probability(response: np.ndarray, k: float, robust: bool = False) -> np.ndarray:
    """Map a raw response to [0, 1) so that 0.5 is the paper's adaptive threshold c + k s.

    See the module docstring for the rule. Returns float32 of the response's shape.
    """
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    r = np.asarray(response, dtype=np.float64)
    c = s = 0.0
    if robust:
        c = float(np.median(r))
        s = 1.4826 * float(np.median(np.abs(r - c)))
    if not robust or s <= _EPS * max(1.0, float(np.abs(r).max())):
        c, s = float(r.mean()), float(r.std())
    if s <= _EPS * max(1.0, float(np.abs(r).max())):
        return np.zeros(r.shape, np.float32)
    z = np.maximum((r - c) / s, 0.0)
    return (1.0 - np.exp2(-z / k)).astype(np.float32)


def patch_positions(n: int, patch: int, step: int) -> np.ndarray:
    """Top-left coordinates along one axis: 0, step, ... and a last window flush with the border.

    The last window makes every pixel covered (IPI-style constructions otherwise drop the border
    strip when (n - patch) is not a multiple of step). `n` must be >= `patch`.
    """
    if n < patch:
        raise ValueError(f"image side {n} is smaller than the patch {patch}")
    pos = list(range(0, n - patch + 1, step))
    if pos[-1] != n - patch:
        pos.append(n - patch)
    return np.asarray(pos, dtype=np.int64)


def pad_to_patch(image: np.ndarray, patch: int) -> np.ndarray:
    """Edge-pad an image smaller than one patch (bottom/right) so the constructions are defined."""
    H, W = image.shape
    ph, pw = max(patch - H, 0), max(patch - W, 0)
    return np.pad(image, ((0, ph), (0, pw)), mode="edge") if ph or pw else image


def extract_patches(
    image: np.ndarray, patch: int, step: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All patch x patch windows on the `patch_positions` grid: ((n, patch, patch), rows, cols).

    Patches are ordered row-major over their top-left corners.
    """
    rows = patch_positions(image.shape[0], patch, step)
    cols = patch_positions(image.shape[1], patch, step)
    win = np.lib.stride_tricks.sliding_window_view(image, (patch, patch))
    patches = win[rows[:, None], cols[None, :]].reshape(-1, patch, patch)
    return np.ascontiguousarray(patches), rows, cols


def fold_patches(
    patches: np.ndarray, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """Inverse of `extract_patches`: average the (n, p, p) patches back into an image of `shape`.

    Overlapping pixels take the mean of every patch covering them (one bincount, no loops).
    """
    p = patches.shape[-1]
    H, W = shape
    off = np.arange(p)
    r = (rows[:, None, None, None] + off[None, None, :, None]) + 0 * cols[None, :, None, None]
    c = (cols[None, :, None, None] + off[None, None, None, :]) + 0 * rows[:, None, None, None]
    idx = (r * W + c).reshape(-1)
    acc = np.bincount(idx, weights=patches.reshape(-1), minlength=H * W)
    cnt = np.bincount(idx, minlength=H * W)
    return (acc / np.maximum(cnt, 1)).reshape(H, W)
