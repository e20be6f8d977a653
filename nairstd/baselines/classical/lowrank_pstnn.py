"""PSTNN: partial sum of the tensor nuclear norm (Zhang & Peng, Remote Sensing 11(4):382, 2019).

1. Patch tensor: p x p windows slid with a step (paper: 40 / 40), stacked as the frontal slices of
   D in R^{p x p x n3}. A non-local, low-rank background B plus a sparse target T: D = B + T.
2. Local prior: the structure tensor J = K_rho * (grad I_s grad I_s^T) of the image gives the
   eigenvalues l1 >= l2; the corner strength l1 l2 / (l1 + l2), times max(l1, l2), min-max
   normalised, is the prior weight map W_p (large on corners / blobs, small on edges and flat
   background), cut into a tensor like D.
3. Model: min ||B||_PSTNN + lambda ||W (.) T||_1  s.t.  D = B + T, where ||.||_PSTNN sums, over
   every frontal slice of fft(B, along mode 3), all singular values but the N largest (which carry
   the background and are not penalised). W = W_sw (.) W_rec: W_rec = 1 / W_p, and the sparsity
   re-weight W_sw = N / (|T| + 0.01) is updated every iteration.
4. ADMM (inexact ALM): B by the PSTNN proximal step (t-SVD: FFT along mode 3, per-slice SVD,
   shrink singular values N+1.. by 1/mu, inverse FFT; batched over slices and only over the
   n3 // 2 + 1 non-redundant ones thanks to the conjugate symmetry of a real tensor), T by
   weighted soft-thresholding, multiplier and mu <- min(rho mu, mu_max). Stops when the relative
   residual < tol, when the number of non-zero target entries stops changing (the paper's extra
   criterion) or after max_iter iterations.
5. The target image is folded back from T (overlaps averaged); its positive part (targets are
   brighter than their surroundings) is the response, thresholded at mean + k std.

Defaults follow the authors' released setting: p = step = 40, lambda = 0.7 / sqrt(max(p, p) n3),
mu0 = 2e-3, rho = 1.05, tol = 1e-3, N from the mode-3 singular values (count of those >= 0.1 x
the largest). The parameters are tuned for 8-bit grey levels, so the [0, 1] input is scaled by 255.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .common import (
    check_image,
    extract_patches,
    fold_patches,
    pad_to_patch,
    single_thread_blas,
    to_probability,
)


def structure_tensor_prior(image: np.ndarray) -> np.ndarray:
    """Prior weight map in [0, 1]: corner strength l1 l2 / (l1 + l2) times max(l1, l2), min-max.

    Gaussian pre-smoothing (sigma 2) and tensor smoothing (sigma 9) both on 3 x 3 supports, as in
    the paper's setting.
    """
    u = ndimage.gaussian_filter(image, sigma=2.0, truncate=0.5, mode="reflect")  # 3 x 3 support
    gy, gx = np.gradient(u)
    smooth = dict(sigma=9.0, truncate=1.0 / 9.0, mode="reflect")  # 3 x 3 support
    j11 = ndimage.gaussian_filter(gx * gx, **smooth)
    j12 = ndimage.gaussian_filter(gx * gy, **smooth)
    j22 = ndimage.gaussian_filter(gy * gy, **smooth)
    root = np.sqrt((j11 - j22) ** 2 + 4 * j12**2)
    l1 = 0.5 * (j11 + j22 + root)
    l2 = np.maximum(0.5 * (j11 + j22 - root), 0.0)
    corner = l1 * l2 / np.maximum(l1 + l2, 1e-12)
    w = corner * np.maximum(l1, l2)
    lo, hi = w.min(), w.max()
    return (w - lo) / (hi - lo) if hi > lo else np.zeros_like(w)


def _rank_n(tensor: np.ndarray, ratio: float = 0.1) -> int:
    """N = number of mode-3 singular values >= ratio x the largest (at least 1)."""
    n3 = tensor.shape[0]
    s = np.linalg.svd(tensor.reshape(n3, -1), compute_uv=False)
    return max(1, int(np.count_nonzero(s >= ratio * s[0]))) if s[0] > 0 else 1


def prox_pstnn(Y: np.ndarray, n_keep: int, tau: float) -> np.ndarray:
    """Proximal step of the PSTNN on a real tensor stored as (n3, n1, n2) (mode 3 first).

    Singular values 1..n_keep of every Fourier slice are kept, the rest shrunk by tau.
    """
    n3 = Y.shape[0]
    Yf = np.fft.rfft(Y, axis=0)  # the n3 // 2 + 1 non-redundant slices
    U, S, Vh = np.linalg.svd(Yf, full_matrices=False)  # batched over slices
    S = S.copy()
    S[:, n_keep:] = np.maximum(S[:, n_keep:] - tau, 0.0)
    return np.fft.irfft((U * S[:, None, :]) @ Vh, n=n3, axis=0)


@single_thread_blas
def pstnn_response(
    image: np.ndarray,
    patch: int = 40,
    step: int = 40,
    lambda_l: float = 0.7,
    mu0: float = 2e-3,
    rho: float = 1.05,
    mu_max: float = 1e10,
    tol: float = 1e-3,
    max_iter: int = 500,
    rank_ratio: float = 0.1,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict]:
    """Target image of the PSTNN decomposition (float64, >= 0, the image's shape)."""
    img = check_image(image)
    H, W = img.shape
    work = pad_to_patch(img * 255.0, patch)
    D, rows, cols = extract_patches(work, patch, step)  # (n3, p, p)
    prior, _, _ = extract_patches(structure_tensor_prior(work), patch, step)
    w_rec = 1.0 / np.maximum(prior, 1e-6)  # 1 / W_p; the floor only avoids inf * 0
    n3 = D.shape[0]
    lam = lambda_l / np.sqrt(patch * n3)
    n_keep = _rank_n(D, rank_ratio)
    norm_d = np.linalg.norm(D)
    B = np.zeros_like(D)
    T = np.zeros_like(D)
    Y = np.zeros_like(D)
    weight = np.ones_like(D)
    mu = mu0
    it = 0
    err = np.inf
    for _ in range(max_iter):
        it += 1
        prev_nnz = int(np.count_nonzero(T > 0))
        B = prox_pstnn(D - T - Y / mu, n_keep, 1.0 / mu)
        R = D - B - Y / mu
        T = np.sign(R) * np.maximum(np.abs(R) - weight * lam / mu, 0.0)
        weight = n_keep / (np.abs(T) + 0.01) * w_rec
        dY = B + T - D
        err = float(np.linalg.norm(dY) / max(norm_d, 1e-12))
        nnz = int(np.count_nonzero(T > 0))
        if err < tol or (prev_nnz > 0 and nnz == prev_nnz):
            break
        Y = Y + mu * dY
        mu = min(rho * mu, mu_max)
    target = np.maximum(fold_patches(T, rows, cols, work.shape), 0.0)[:H, :W] / 255.0
    if return_info:
        return target, {"iterations": it, "residual": err, "rank_n": n_keep, "patches": n3}
    return target


def pstnn(
    image: np.ndarray,
    patch: int = 40,
    step: int = 40,
    lambda_l: float = 0.7,
    mu0: float = 2e-3,
    rho: float = 1.05,
    tol: float = 1e-3,
    max_iter: int = 500,
    k: float = 3.0,
    robust: bool = False,
) -> np.ndarray:
    """PSTNN detection map in [0, 1) (0.5 = the adaptive threshold mean + k std of the target image).

    Parameters (authors' defaults):
        image: float (H, W) grey image in [0, 1] (sides >= 1 px; smaller than `patch` is padded).
        patch, step: patch size and sliding step of the patch tensor (40, 40).
        lambda_l: lambda = lambda_l / sqrt(max(n1, n2) * n3) (0.7 in the code; 0.6 in the text).
        mu0, rho: initial ADMM penalty and its growth factor (2e-3, 1.05).
        tol, max_iter: stop at relative residual < tol (1e-3), or after max_iter (500) iterations,
            or when the target support stops changing (usually a few dozen iterations).
        k: adaptive-threshold factor (ours: 3; the paper segments with mean + k std, k empirical).
        robust: median / MAD statistics instead of mean / std (see `common.to_probability`).
    """
    r = pstnn_response(image, patch, step, lambda_l, mu0, rho, 1e10, tol, max_iter)
    return to_probability(r, k, robust)
