"""FPN-like pixel decoder: multi-scale memory for the transformer decoder + per-pixel embeddings."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .layers import ConvBNAct, DWSepBlock


def _up(x: Tensor, ref: Tensor) -> Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class PixelDecoder(nn.Module):
    """Top-down fusion of the encoder stages (SPEC §2.1).

    Returns the per-pixel embeddings at `output_stride` and the memory maps for the transformer
    decoder (the three coarsest levels, strides 32 / 16 / 8 for a 4-stage encoder, coarse first).
    For `output_stride` 2 (and 1) the stride-4 map is upsampled and fused with the encoder stem's
    stride-2 map (and a full-resolution conv of the image): small targets of 1-3 px are at most a
    single stride-4 cell, so a shallow high-resolution skip is what lets the mask resolve them.
    The extra levels use depthwise-separable refinement to stay cheap at high resolution.
    """

    def __init__(
        self,
        widths: tuple[int, ...],
        dim: int,
        output_stride: int = 4,
        skip_chans: int = 8,
        in_chans: int = 1,
        memory_levels: int = 3,
    ) -> None:
        super().__init__()
        if output_stride not in (1, 2, 4):
            raise ValueError(f"output_stride must be 1, 2 or 4, got {output_stride}")
        self.output_stride = output_stride
        self.memory_levels = min(memory_levels, len(widths) - 1)
        self.lateral = nn.ModuleList(nn.Conv2d(w, dim, 1) for w in widths)
        self.smooth = nn.ModuleList(ConvBNAct(dim, dim, 3) for _ in widths)
        if output_stride <= 2:
            self.lateral_s2 = nn.Conv2d(skip_chans, dim, 1)
            self.refine_s2 = DWSepBlock(dim)
        if output_stride == 1:
            self.lateral_s1 = ConvBNAct(in_chans, dim, 3)
            self.refine_s1 = DWSepBlock(dim)

    def forward(
        self, feats: list[Tensor], skip: Tensor, image: Tensor
    ) -> tuple[Tensor, list[Tensor]]:
        """feats: F_1..F_L (fine to coarse) -> (per-pixel embeddings, memory maps coarse-first)."""
        outs: list[Tensor] = []
        p = None
        for i in range(len(feats) - 1, -1, -1):  # coarse to fine
            lat = self.lateral[i](feats[i])
            p = lat if p is None else lat + _up(p, lat)
            outs.append(self.smooth[i](p))
        memory = outs[: self.memory_levels]  # strides 32, 16, 8
        pix = outs[-1]  # stride 4
        if self.output_stride <= 2:
            pix = self.refine_s2(self.lateral_s2(skip) + _up(pix, skip))
        if self.output_stride == 1:
            pix = self.refine_s1(self.lateral_s1(image) + _up(pix, image))
        return pix, memory
