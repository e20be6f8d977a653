"""Patch relevance scoring, Top-K selection and patch labels (SPEC §2.3, Eq. 3, 10-12).

Patch index order is row-major on the patch lattice, (r, c) -> r * cols + c, for images padded at
the bottom / right to a multiple of P (as the models pad). The metrics module uses the same order.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor, nn

from nairstd.grid import EIGHT_CONNECTED, pad_array, patch_flags, patch_means

from .layers import MLP


class ScoringMLP(nn.Module):
    """s_i = sigmoid(MLP(t_i)) on the final GPM tokens; returns the pre-sigmoid logits (B, N)."""

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = MLP(dim, hidden, 1)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.mlp(self.norm(tokens)).squeeze(-1)


def k_for(n_patches: int | Tensor, top_k: int | float) -> int | Tensor:
    """Number of selected patches: a fixed int K, or a fraction of N (float in (0, 1]), in [1, N].

    Under tracing (ONNX export) `n_patches` is a traced 0-d tensor and so is the result: min(K, N)
    stays in the graph, so one exported graph selects min(K, N) patches at every input size.
    """
    if isinstance(top_k, bool):
        raise TypeError("top_k must be an int or a float fraction, not bool")
    if isinstance(top_k, int):
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        k = top_k
    elif isinstance(top_k, float):
        if not 0.0 < top_k <= 1.0:
            raise ValueError(f"a fractional top_k must lie in (0, 1], got {top_k}")
        k = math.ceil(top_k * n_patches)
    else:
        raise TypeError(f"top_k must be int or float, got {type(top_k).__name__}")
    if isinstance(n_patches, Tensor):
        if isinstance(top_k, float):
            return torch.ceil(n_patches * top_k).long().clamp(min=1).minimum(n_patches)
        return n_patches.clamp(min=1, max=k)
    return max(1, min(k, n_patches))


def select_top_k(scores: Tensor, k: int | Tensor) -> Tensor:
    """Indices (B, K) of the K highest scores per image, highest first (Eq. 3).

    Deterministic: a stable descending sort keeps tied patches in index order, so ties go to the
    lower index. No gradient flows through the indices (hard Top-K).
    Under tracing (ONNX export) it is `topk` instead: exporters cannot write a stable sort, and
    ONNX TopK breaks ties by the lower index too (checked against this sort in tests/test_export.py).
    """
    if torch.jit.is_tracing():
        return torch.topk(scores.detach(), k, dim=1, largest=True, sorted=True).indices
    order = torch.sort(scores.detach(), dim=1, descending=True, stable=True).indices
    return order[:, :k]


def _mask_numpy(mask: Tensor, patch_size: int) -> np.ndarray:
    """(B, 1, H, W) bool/float -> bool numpy (B, H', W') zero-padded bottom/right to multiples of P."""
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be (B, 1, H, W), got {tuple(mask.shape)}")
    m = mask.detach().cpu()
    m = (m if m.dtype == torch.bool else m > 0.5).numpy()[:, 0]
    return pad_array(m, patch_size)


def soft_weight_map(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Pixel weights w(p) = max_{c in C} exp(-||p - c||^2 / (2 sigma^2)) (Eq. 10) of a bool (H, W)
    mask; C = the centroids of its 8-connected components, w = 0 for an empty mask."""
    H, W = mask.shape
    lab, n = ndimage.label(mask, structure=EIGHT_CONNECTED)
    w = np.zeros((H, W))
    if n:
        rr = np.arange(H, dtype=np.float64)
        cc = np.arange(W, dtype=np.float64)
        for cy, cx in ndimage.center_of_mass(mask, lab, range(1, n + 1)):
            # exp is separable in the row and column offsets: an outer product per centre.
            gy = np.exp(-((rr - cy) ** 2) / (2 * sigma**2))
            gx = np.exp(-((cc - cx) ** 2) / (2 * sigma**2))
            np.maximum(w, np.outer(gy, gx), out=w)
    return w


def soft_patch_labels(mask: Tensor, patch_size: int, sigma: float = 8.0) -> Tensor:
    """Soft patch labels (Eq. 10-11) -> float32 (B, N) on the mask's device.

    Target centres C are the centroids of the 8-connected components of the mask;
    w(p) = max_{c in C} exp(-||p - c||^2 / (2 sigma^2)) (w = 0 for an empty mask);
    y_i = mean of w over the pixels of patch i. Pixel p and centroid c are in (row, col) pixel
    index coordinates.
    """
    m = _mask_numpy(mask, patch_size)
    out = [patch_means(soft_weight_map(img, sigma), patch_size).reshape(-1) for img in m]
    return torch.from_numpy(np.stack(out)).float().to(mask.device)


def hard_patch_labels(mask: Tensor, patch_size: int) -> Tensor:
    """Hard patch labels (ablation): 1.0 where the patch holds any ground-truth pixel -> (B, N)."""
    m = _mask_numpy(mask, patch_size)
    out = [patch_flags(img, patch_size) for img in m]
    return torch.from_numpy(np.stack(out)).float().to(mask.device)


def score_loss(patch_logits: Tensor, labels: Tensor) -> Tensor:
    """L_score (Eq. 12): BCE between sigmoid(patch_logits) and the labels, mean over patches and images."""
    return F.binary_cross_entropy_with_logits(patch_logits, labels.to(patch_logits.dtype))
