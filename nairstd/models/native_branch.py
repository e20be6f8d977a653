"""Native-resolution branch (SPEC §2.2): patchify (Eq. 5), PDE (Eq. 6), GPM (Eq. 7-9).

Patch index order everywhere is row-major on the patch lattice: patch (r, c) -> r * cols + c.
Per-stage native features are returned as (B, N, d_l, P_l, P_l) with P_l = P / 2^(l-1).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Attention, ConvBNAct, fold_bn, make_block, to_memory_format


def patchify(x: Tensor, patch_size: int) -> tuple[Tensor, tuple[int, int]]:
    """(B, C, H, W) -> ((B*N, C, P, P), (rows, cols)); H and W must be multiples of P (Eq. 5)."""
    B, C, H, W = x.shape
    P = patch_size
    if H % P or W % P:
        raise ValueError(f"image {H}x{W} is not a multiple of the patch size {P}")
    rows, cols = H // P, W // P
    p = x.reshape(B, C, rows, P, cols, P).permute(0, 2, 4, 1, 3, 5)
    return p.reshape(B * rows * cols, C, P, P), (rows, cols)


def unpatchify(patches: Tensor, grid: tuple[int, int]) -> Tensor:
    """Inverse of `patchify`: (B*N, C, p, p) or (B, N, C, p, p) -> (B, C, rows*p, cols*p)."""
    rows, cols = grid
    C, p = patches.shape[-3], patches.shape[-1]
    x = patches.reshape(-1, rows, cols, C, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(-1, C, rows * p, cols * p)


class PDE(nn.Module):
    """Patchwise detail extraction: a shared conv encoder, one stage per detector stage.

    Stage 1 runs at native resolution (P_1 = P) with few channels; every later stage halves the
    resolution inside the patch with a 2x2 stride-2 conv (space-to-depth + linear mix, the SPDConv
    idea), which never mixes pixels across the 2x2 cell grid and keeps the patch lattice aligned.
    The blocks are depthwise-separable by default: at native resolution the cost is per pixel
    (SPEC §8), so channels and full 3x3 convs there are what must be kept small.
    """

    def __init__(
        self,
        in_chans: int,
        widths: tuple[int, ...],
        depths: tuple[int, ...],
        block: str = "dwsep",
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        for i, (w, d) in enumerate(zip(widths, depths)):
            if i == 0:
                first = ConvBNAct(in_chans, w, 3)
            else:
                first = ConvBNAct(widths[i - 1], w, 2, 2, padding=0)
            self.stages.append(nn.Sequential(first, *[make_block(block, w) for _ in range(d)]))


class GPM(nn.Module):
    """Global patch mixer: pool each patch to a token (Eq. 7), self-attention over the N tokens
    of each image (Eq. 8, pre-norm; no output projection, as in Eq. 8), add A_i back to every
    pixel of patch i (Eq. 9). Cost O(N^2 d), never O((HW)^2).
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, out_proj=False)

    def forward(self, y: Tensor, batch: int) -> tuple[Tensor, Tensor]:
        """y (B*N, d, p, p) -> (y + A broadcast, tokens t + A (B, N, d))."""
        BN, d = y.shape[:2]
        t = y.mean(dim=(2, 3)).reshape(batch, BN // batch, d)  # Eq. 7
        a = self.attn(self.norm(t))  # Eq. 8
        y = y + a.reshape(BN, d, 1, 1)  # Eq. 9
        return y, t + a


class NativeStage(NamedTuple):
    """A stage's native features kept as F_l^na = y + A: y (B*N, d, p, p) before the GPM add-back
    and A (B*N, d). Inference only needs F_l^na at the K selected patches, so the full add (a pass
    over every native pixel) is done only for those rows, or on demand by `dense`."""

    y: Tensor
    a: Tensor

    def rows(self, index: Tensor) -> Tensor:
        """F_l^na of the patches `index` (flat b * N + i) -> (M, d, p, p)."""
        return self.y.index_select(0, index) + self.a.index_select(0, index)[:, :, None, None]

    def dense(self, batch: int) -> Tensor:
        """All of F_l^na as (B, N, d, p, p)."""
        f = self.y + self.a[:, :, None, None]
        return f.reshape(batch, f.shape[0] // batch, *f.shape[1:])


def _first_conv(first: ConvBNAct, y: Tensor, a_prev: Tensor | None) -> Tensor:
    """Eval ConvBNAct on y + A_prev (A_prev broadcast over each patch, or None).

    The stride-2 2x2 conv has no padding, so every output sees only pixels of its own patch and
    conv(y + A) = conv(y) + (sum of the kernel over space) A: the add-back becomes a per-patch bias.
    """
    conv, bn = first[0], first[1]
    w, b = fold_bn(conv, bn)
    if a_prev is None:
        y = F.conv2d(y, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)
    else:
        if conv.padding != (0, 0) or conv.groups != 1:
            raise ValueError("the add-back folding needs an unpadded, ungrouped conv")
        y = F.conv2d(y, w, None, conv.stride, 0, conv.dilation)
        y = y + torch.addmm(b, a_prev, w.sum((2, 3)).t())[:, :, None, None]
    return y.relu_() if len(first) > 2 else y


def fast_stage(stage: nn.Sequential, y: Tensor, a_prev: Tensor | None) -> Tensor:
    """Eval-mode PDE stage on y + A_prev (see `_first_conv`): same output, fewer passes."""
    y = _first_conv(stage[0], y, a_prev)
    for block in list(stage)[1:]:
        y = block(y)  # eval blocks fold their BN themselves (nairstd.models.layers)
    return y


class PatchNativeBranch(nn.Module):
    """Na-IRSTD's patch-based 2D+1D branch: PDE on every patch + a GPM after each stage."""

    def __init__(
        self,
        patch_size: int,
        in_chans: int,
        widths: tuple[int, ...],
        depths: tuple[int, ...],
        block: str = "dwsep",
        gpm_head_dim: int = 16,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.channels_last = channels_last
        self.pde = PDE(in_chans, widths, depths, block)
        self.gpm = nn.ModuleList(GPM(w, max(1, w // gpm_head_dim)) for w in widths)

    def forward_stages(self, x: Tensor) -> tuple[list[NativeStage], Tensor, tuple[int, int]]:
        """Eval fast path: ([NativeStage per stage], final tokens (B, N, d_L), grid).

        Same values as `forward` (to float error): BN folded into the convs, the GPM add-back
        deferred (into the next stage's conv bias, and into the selected rows at injection).
        """
        B = x.shape[0]
        y, grid = patchify(x, self.patch_size)
        y = to_memory_format(y, self.channels_last)
        stages: list[NativeStage] = []
        a = None
        tokens = y.new_zeros(0)
        for stage, gpm in zip(self.pde.stages, self.gpm):
            y = fast_stage(stage, y, a)
            BN, d = y.shape[:2]
            t = y.mean(dim=(2, 3)).reshape(B, BN // B, d)  # Eq. 7 (mean(y + A) = mean(y) + A)
            a3 = gpm.attn(gpm.norm(t))  # Eq. 8
            tokens = t + a3
            a = a3.reshape(BN, d)
            stages.append(NativeStage(y, a))
        return stages, tokens, grid

    def forward(self, x: Tensor) -> tuple[list[Tensor], Tensor, tuple[int, int]]:
        """Padded image (B, C, H, W) -> ([F_l^na (B, N, d_l, P_l, P_l)], final tokens (B, N, d_L), grid)."""
        B = x.shape[0]
        if not self.training:
            stages, tokens, grid = self.forward_stages(x)
            return [s.dense(B) for s in stages], tokens, grid
        y, grid = patchify(x, self.patch_size)  # (B*N, C, P, P)
        y = to_memory_format(y, self.channels_last)
        N = grid[0] * grid[1]
        feats = []
        tokens = y.new_zeros(0)
        for stage, gpm in zip(self.pde.stages, self.gpm):
            y, tokens = gpm(stage(y), B)
            feats.append(y.reshape(B, N, *y.shape[1:]))
        return feats, tokens, grid


def to_cells(f: Tensor, cell: int) -> Tensor:
    """Dense map (B, d, H, W) -> per-cell features (B, N, d, cell, cell), row-major cells."""
    B = f.shape[0]
    p, grid = patchify(f, cell)
    return p.reshape(B, grid[0] * grid[1], *p.shape[1:])


class DenseNativeBranch(nn.Module):
    """ "Non-Patch-based CNN" (Table IV): the same PDE convs run densely on the whole image
    (convolutions see across patch borders; no patching, no GPM). Features are cut into the same
    P_l x P_l cells so scoring, selection and injection are unchanged; a cell's token is the
    average pool of its final-stage features.
    """

    def __init__(
        self,
        patch_size: int,
        in_chans: int,
        widths: tuple[int, ...],
        depths: tuple[int, ...],
        block: str = "dwsep",
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.pde = PDE(in_chans, widths, depths, block)

    def forward(self, x: Tensor) -> tuple[list[Tensor], Tensor, tuple[int, int]]:
        H, W = x.shape[-2:]
        P = self.patch_size
        if H % P or W % P:
            raise ValueError(f"image {H}x{W} is not a multiple of the patch size {P}")
        grid = (H // P, W // P)
        feats = []
        y = x
        for i, stage in enumerate(self.pde.stages):
            y = stage(y)
            feats.append(to_cells(y, P >> i))
        tokens = torch.mean(feats[-1], dim=(-2, -1))
        return feats, tokens, grid
