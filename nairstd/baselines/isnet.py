"""ISNet: shape matters for infrared small target detection (Zhang, Zhang, Li, et al., CVPR 2022).

* Backbone: the ACM-style U-Net (stride-4 stem, three residual stages, two up stages) whose skip
  fusions are *TOAA* blocks (two-orientation attention aggregation): the up-sampled deep feature
  computes a row attention (1 x k conv) and a column attention (k x 1 conv), each gating the
  encoder skip feature; the two oriented results are summed.
* Edge branch: the image gradient (Sobel magnitude of the input, a fixed filter) enters a chain of
  three *TFD* blocks (Taylor-finite-difference inspired): two residual steps u1 = u0 + f1(u0),
  u2 = u1 + f2(u1), then a higher-order update u3 = u2 + g(u2, s) + 3 f1(u0), where g is a gated
  spatial conv driven by a side output s of one decoder level (deepest first). A 1x1 conv gives
  the edge logits; sigmoid(edge) re-weights the full-resolution decoder feature
  (F <- F * (1 + edge)) before the FCN head.
* Loss: the paper trains with SoftIoU on the mask plus an edge loss on the edge map against the
  ground-truth boundary. `model.loss` implements SoftIoU + `edge_weight` * (BCE + Dice) on the
  edge logits, with the boundary taken as the morphological gradient (3x3 dilation - erosion) of
  the mask. The shared training loop (BCE + Dice on the logits only) ignores the edge output; the
  edge branch still trains through the re-weighting of the decoder feature.

Deviations: TOAA uses plain 1 x k / k x 1 convs where the paper uses deformable ones (no DCN
kernels offline); the gradient image is computed inside the model (Sobel) instead of being a second
input. The paper's size (ACM backbone 8/16/32/64 x 4 blocks, 64-channel edge branch) has ~1.0 M
parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nairstd.losses import dice_loss, soft_iou_loss
from nairstd.models.layers import ConvBNAct, pad_to_multiple
from nairstd.models.registry import register_model

from .common import (
    ACMStyleUNet,
    FCNHead,
    main_logits,
    sized_config,
    upsample_to,
)


@dataclass
class ISNetConfig:
    """ISNet configuration."""

    in_chans: int = 1  # grey infrared input
    stem_width: int = 8  # width of the first two stem convs (the stem ends at widths[0])
    widths: tuple[int, int, int] = (16, 32, 64)  # stage widths at strides 4, 8, 16
    blocks: tuple[int, int, int] = (4, 4, 4)  # residual blocks per stage
    edge_width: int = 64  # channels of the full-resolution TFD edge branch
    toaa_kernel: int = 3  # k of the 1 x k (row) and k x 1 (column) TOAA convs
    dropout: float = 0.1  # dropout in the FCN head
    edge_weight: float = 1.0  # weight of the edge loss in `model.loss`


PRESETS: dict[str, dict[str, Any]] = {
    # The edge branch runs at full resolution: 64 channels there cost ~30 GMAC per 256^2 image,
    # so `tiny` narrows it to 8 (1.0 GMAC in all; the backbone is already small).
    "tiny": dict(edge_width=8),
    "base": dict(edge_width=64),
}


class TOAA(nn.Module):
    """Two-orientation attention aggregation of a (deep, skip) feature pair of equal width."""

    def __init__(self, channels: int, k: int = 3) -> None:
        super().__init__()
        # Shared bottleneck applied to both inputs before the oriented attentions.
        self.pre = nn.Sequential(
            nn.Conv2d(channels, max(channels // 2, 1), 1),
            nn.Conv2d(max(channels // 2, 1), channels, 1),
        )
        self.row = nn.Conv2d(channels, channels, (1, k), padding=(0, k // 2))
        self.col = nn.Conv2d(channels, channels, (k, 1), padding=(k // 2, 0))

    def forward(self, deep: Tensor, skip: Tensor) -> Tensor:
        a, b = self.pre(deep), self.pre(skip)
        # Attention along rows and along columns separately: a target's extent differs per
        # orientation (streak-like clutter is long in one of them), which is the shape cue.
        rows = a + torch.sigmoid(self.row(a)) * b
        cols = a + torch.sigmoid(self.col(a)) * b
        return rows + cols


class GatedSpatialConv(nn.Module):
    """Gated conv (GSCNN): a side map s gates the edge feature u: out = W (u * (1 + alpha))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.BatchNorm2d(channels + 1),
            nn.Conv2d(channels + 1, channels + 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels + 1, 1, 1),
            nn.BatchNorm2d(1),
            nn.Sigmoid(),
        )
        self.out = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, u: Tensor, side: Tensor) -> Tensor:
        alpha = self.gate(torch.cat([u, side], 1))
        return self.out(u * (alpha + 1))


class TFD(nn.Module):
    """Taylor-finite-difference inspired edge block (three-step, higher-order residual update)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.f1 = nn.Sequential(
            ConvBNAct(channels, channels), ConvBNAct(channels, channels, act=False)
        )
        self.f2 = nn.Sequential(
            ConvBNAct(channels, channels), ConvBNAct(channels, channels, act=False)
        )
        self.gate = GatedSpatialConv(channels)

    def forward(self, u0: Tensor, side: Tensor) -> Tensor:
        # A residual step u + f(u) is a first-order finite difference (an Euler step); combining
        # the first difference d0 with later steps (coefficient 3, as in the paper's higher-order
        # Taylor scheme) amplifies the high-frequency content, i.e. the target's edges.
        d0 = self.f1(u0)
        u1 = F.relu(u0 + d0)
        u2 = F.relu(u1 + self.f2(u1))
        return u2 + self.gate(u2, side) + 3 * d0


class ISNet(ACMStyleUNet):
    """ISNet (CVPR'22): TOAA-fused U-Net + TFD edge branch re-weighting the decoder output."""

    def __init__(self, config: ISNetConfig) -> None:
        super().__init__()
        self.config = c = config
        w1, w2, w3 = c.widths
        e = c.edge_width
        self.build_unet(c, lambda width: TOAA(width, c.toaa_kernel))
        # Edge branch.
        sobel = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        self.register_buffer("sobel", torch.stack([sobel, sobel.t()])[:, None], persistent=False)
        self.edge_in = nn.Conv2d(c.in_chans, e, 1)
        self.side = nn.ModuleList([nn.Conv2d(ch, 1, 1) for ch in (w3, w2, w1)])
        self.tfd = nn.ModuleList([TFD(e) for _ in range(3)])
        self.edge_out = nn.Conv2d(e, 1, 1, bias=False)
        self.head = FCNHead(w1, 1, c.dropout)

    def gradient(self, x: Tensor) -> Tensor:
        """Sobel gradient magnitude per input channel (the edge branch's input)."""
        B, Cin, H, W = x.shape
        g = F.conv2d(F.pad(x.reshape(B * Cin, 1, H, W), (1, 1, 1, 1), mode="replicate"), self.sobel)
        return g.square().sum(1, keepdim=True).add(1e-12).sqrt().reshape(B, Cin, H, W)

    def forward(self, x: Tensor, return_aux: bool = False) -> Tensor | dict[str, Any]:
        H, W = x.shape[-2:]
        xp = pad_to_multiple(x, self.pad_multiple, "replicate")
        c3, d2, d1 = self.unet(xp)
        u = self.edge_in(self.gradient(xp))
        for feat, side, tfd in zip((c3, d2, d1), self.side, self.tfd):
            u = tfd(u, upsample_to(side(feat), xp))
        edge_logits = self.edge_out(u)
        d1_full = upsample_to(d1, xp)
        logits = self.head(d1_full * (1 + torch.sigmoid(edge_logits)))[..., :H, :W]
        if not return_aux:
            return logits
        return {"logits": logits, "edge": edge_logits[..., :H, :W]}

    def loss(self, out: Tensor | dict[str, Any], target: Tensor) -> Tensor:
        """SoftIoU on the mask + edge_weight * (BCE + Dice) of the edge logits vs the GT boundary.

        With a plain logits Tensor (no edge output) this is SoftIoU alone.
        """
        loss = soft_iou_loss(main_logits(out), target)
        if isinstance(out, dict) and "edge" in out and self.config.edge_weight > 0:
            edge_gt = mask_boundary(target.float())
            edge = out["edge"]
            e_loss = F.binary_cross_entropy_with_logits(edge.float(), edge_gt) + dice_loss(
                edge, edge_gt
            )
            loss = loss + self.config.edge_weight * e_loss
        return loss


def mask_boundary(mask: Tensor) -> Tensor:
    """Morphological gradient (3x3 dilation minus 3x3 erosion) of a (B, 1, H, W) 0/1 mask."""
    dil = F.max_pool2d(mask, 3, 1, 1)
    ero = -F.max_pool2d(-mask, 3, 1, 1)
    return (dil - ero).clamp(0, 1)


@register_model("isnet")
def isnet(size: str = "tiny", **overrides: Any) -> ISNet:
    """ISNet (Zhang et al., CVPR 2022). `base` = the paper's size (~1.0 M); `tiny` narrows the edge branch."""
    return ISNet(sized_config(ISNetConfig, PRESETS, size, **overrides))
