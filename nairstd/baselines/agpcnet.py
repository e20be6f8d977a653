"""AGPCNet: attention-guided pyramid context network (Zhang, Li, Cao, Pu, Peng, IEEE TAES 2023).

* Backbone: ResNet-18 without the stem's stride and max-pool (targets are a few pixels), four
  stages at strides 1, 2, 4, 8; the last three feed the decoder (c1, c2, c3).
* Context pyramid module (CPM) on c3: a 1x1 reduction, then one attention-guided context block
  (AGCB) per scale s, in parallel, concatenated with the reduced input and fused by a 1x1 conv.
* AGCB at scale s: the map is cut into an s x s grid of patches. A non-local block runs *inside*
  every patch (local context, pixel-to-pixel attention within the patch); a global context
  attention (GCA) max-pools every patch to one token, runs a non-local block over the s^2 tokens
  and a sigmoid gives a per-patch channel weight that multiplies that patch's local context.
  A 3x3 conv + BN, a zero-initialised residual scale gamma and a ReLU close the block.
* Asymmetric fusion module (AFM) on the way up (c3 -> c2 -> c1): the deep feature is projected to
  the shallow width and added to it; a 3x3 conv follows, multiplied by a channel attention of the
  deep feature and a point-wise (per-pixel) attention of the shallow feature.
* FCN head at stride 2, bilinear up-sampling to full resolution. The paper trains with SoftIoU
  (`model.loss`).

Deviation: when s does not divide the map, the paper's code makes the last patch of a row /
column larger; we cut equal patches of ceil(H / s) px, pad the last one and mask the padding out
of the attention, so the grid can hold fewer than s patches per axis on small maps (e.g. 8 for
s = 10 on a 32 px map) - the patch *size* follows the paper. The paper's size (ResNet-18 backbone,
scales (10, 6), reductions (8, 8)) has ~12.4 M parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nairstd.models.layers import ConvBNAct, pad_to_multiple
from nairstd.models.registry import register_model

from .common import (
    ChannelGate,
    FCNHead,
    PointwiseGate,
    SoftIoULoss,
    res_stage,
    sized_config,
    upsample_to,
)


@dataclass
class AGPCNetConfig:
    """AGPCNet configuration."""

    in_chans: int = 1  # grey infrared input
    stem_width: int = 64  # 7x7 stride-1 stem conv width
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)  # ResNet stages, strides 1, 2, 4, 8
    blocks: tuple[int, int, int, int] = (2, 2, 2, 2)  # basic blocks per stage (ResNet-18)
    scales: tuple[int, ...] = (10, 6)  # AGCB patch-grid sizes s in the context pyramid
    cpm_reduction: int = 8  # CPM 1x1 channel reduction of c3
    nl_reduction: int = 8  # non-local query/key channel reduction
    dropout: float = 0.1  # dropout in the FCN head


PRESETS: dict[str, dict[str, Any]] = {
    # 1/4 of the widths and one block per stage: 1.5 GMAC per 256^2 image (paper size: 43).
    "tiny": dict(stem_width=16, widths=(16, 32, 64, 128), blocks=(1, 1, 1, 1)),
    "base": dict(stem_width=64, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2)),
}


class NonLocal(nn.Module):
    """Non-local block on token groups: x (N, L, C) -> x + gamma * softmax(q k^T) v.

    `mask` (N, L) marks the real tokens; padded keys get no attention. gamma starts at 0 (the
    block starts as identity), as in the paper's code.
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        inner = max(channels // reduction, 1)
        self.q = nn.Linear(channels, inner)
        self.k = nn.Linear(channels, inner)
        self.v = nn.Linear(channels, channels)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        energy = self.q(x) @ self.k(x).transpose(1, 2)  # (N, L, L), unscaled as in the paper
        if mask is not None:
            energy = energy.masked_fill(~mask[:, None, :], float("-inf"))
        return x + self.gamma * (energy.softmax(-1) @ self.v(x))


def _grid(n: int, s: int) -> tuple[int, int]:
    """(patch size, patches) cutting length n into at most s equal patches, none of them empty."""
    p = math.ceil(n / min(s, n))
    return p, math.ceil(n / p)


class AGCB(nn.Module):
    """Attention-guided context block at patch-grid scale s (patch-wise GCA variant)."""

    def __init__(self, channels: int, scale: int, reduction: int = 8) -> None:
        super().__init__()
        self.scale = scale
        self.local = NonLocal(channels, reduction)
        self.glob = NonLocal(channels, reduction)
        self.conv = ConvBNAct(channels, channels, 3, act=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        ph, nh = _grid(H, self.scale)
        pw, nw = _grid(W, self.scale)
        xp = F.pad(x, (0, nw * pw - W, 0, nh * ph - H))
        valid = torch.zeros(1, 1, nh * ph, nw * pw, dtype=torch.bool, device=x.device)
        valid[..., :H, :W] = True
        # (B, C, nh, ph, nw, pw) -> (B * nh * nw, ph * pw, C): one token group per patch.
        patches = xp.view(B, C, nh, ph, nw, pw).permute(0, 2, 4, 3, 5, 1).reshape(-1, ph * pw, C)
        mask = valid.view(1, 1, nh, ph, nw, pw).permute(0, 2, 4, 3, 5, 1).reshape(-1, ph * pw)
        mask = mask.repeat(B, 1)  # patches are ordered (batch, row, column)
        local = self.local(patches, mask)
        # Global context attention: per-patch max (padding excluded) -> non-local over patches.
        tokens = patches.masked_fill(~mask[..., None], float("-inf")).amax(1).view(B, nh * nw, C)
        att = torch.sigmoid(self.glob(tokens)).reshape(B * nh * nw, 1, C)
        ctx = (local * att).view(B, nh, nw, ph, pw, C).permute(0, 5, 1, 3, 2, 4)
        ctx = ctx.reshape(B, C, nh * ph, nw * pw)[..., :H, :W]
        return F.relu(x + self.gamma * self.conv(ctx))


class CPM(nn.Module):
    """Context pyramid module: reduce, AGCBs at several scales in parallel, concatenate, fuse."""

    def __init__(
        self, channels: int, scales: tuple[int, ...], reduction: int, nl_reduction: int
    ) -> None:
        super().__init__()
        inner = max(channels // reduction, 1)
        self.reduce = ConvBNAct(channels, inner, 1)
        self.blocks = nn.ModuleList([AGCB(inner, s, nl_reduction) for s in scales])
        self.fuse = ConvBNAct(inner * (len(scales) + 1), channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        r = self.reduce(x)
        return self.fuse(torch.cat([r] + [b(r) for b in self.blocks], 1))


class AFM(nn.Module):
    """Asymmetric fusion: conv(low + proj(high)) * channel-att(high) * point-wise-att(low)."""

    def __init__(self, high_ch: int, low_ch: int, reduction: int = 4) -> None:
        super().__init__()
        self.proj = ConvBNAct(high_ch, low_ch, 1)
        self.ca = ChannelGate(low_ch, reduction)
        self.pa = PointwiseGate(low_ch, reduction)
        self.conv = ConvBNAct(low_ch, low_ch, 3)

    def forward(self, high: Tensor, low: Tensor) -> Tensor:
        high = self.proj(upsample_to(high, low))
        return self.conv(low + high) * self.ca(high) * self.pa(low)


class AGPCNet(SoftIoULoss, nn.Module):
    """AGPCNet (TAES'23): stride-free ResNet, context pyramid on c3, asymmetric fusion decoder."""

    def __init__(self, config: AGPCNetConfig) -> None:
        super().__init__()
        self.config = c = config
        w0, w1, w2, w3 = c.widths
        self.stem = ConvBNAct(c.in_chans, c.stem_width, 7)
        self.layer0 = res_stage(c.stem_width, w0, c.blocks[0])
        self.layer1 = res_stage(w0, w1, c.blocks[1], stride=2)
        self.layer2 = res_stage(w1, w2, c.blocks[2], stride=2)
        self.layer3 = res_stage(w2, w3, c.blocks[3], stride=2)
        self.context = CPM(w3, c.scales, c.cpm_reduction, c.nl_reduction)
        self.fuse32 = AFM(w3, w2)
        self.fuse21 = AFM(w2, w1)
        self.head = FCNHead(w1, 1, c.dropout)
        # The authors' init (Tianfang-Zhang/AGPCNet: models/network.py, AGPCNet.__init__): every
        # conv Kaiming-normal (fan_out, ReLU), every BN weight 1 / bias 0. It matters for their
        # SGD recipe: under PyTorch's default init the logits start almost constant (std < 0.01
        # over an image), and SoftIoU's per-pixel gradient (~1/union) then barely moves them
        # under plain SGD (measured: SoftIoU 0.998 -> 0.996 in 640 steps).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    pad_multiple = 8

    def forward(self, x: Tensor, return_aux: bool = False) -> Tensor | dict[str, Any]:
        H, W = x.shape[-2:]
        xp = pad_to_multiple(x, self.pad_multiple, "replicate")
        c1 = self.layer1(self.layer0(self.stem(xp)))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        out = self.fuse21(self.fuse32(self.context(c3), c2), c1)
        logits = upsample_to(self.head(out), xp)[..., :H, :W]
        return {"logits": logits} if return_aux else logits


@register_model("agpcnet")
def agpcnet(size: str = "tiny", **overrides: Any) -> AGPCNet:
    """AGPCNet (Zhang et al., TAES 2023). `base` = the paper's size (~12.4 M); `tiny` 1/4 widths."""
    return AGPCNet(sized_config(AGPCNetConfig, PRESETS, size, **overrides))
