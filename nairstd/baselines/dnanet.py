"""DNANet: dense nested attention network (Li, Xiao, Wang, et al., IEEE TIP 2022).

* Dense nested interactive module (DNIM): a UNet++-like grid of nodes X[i, j] (level i = 0..4,
  column j = 0..4-i). Node X[i, j] convolves the concatenation of every earlier node of its level
  X[i, 0..j-1], the up-sampled X[i+1, j-1] and - DNANet's addition to UNet++ - the down-sampled
  X[i-1, j], so shallow and deep features interact repeatedly and small targets are not lost in
  the deep layers.
* Every node is a residual block with a channel-and-spatial attention module (CSAM, i.e. CBAM:
  channel attention from avg- and max-pooled MLP, spatial attention from a 7x7 conv on the
  channel-wise mean and max) that refines the features.
* Feature pyramid fusion module (FPFM): the last node of every level (X[4,0], X[3,1], X[2,2],
  X[1,3], X[0,4]) is projected to the level-0 width, up-sampled to full resolution, concatenated and
  fused by one more block; a 1x1 conv gives the logits.
* Deep supervision (optional, on by default as in the paper): 1x1 heads on X[0,1..3] give extra
  outputs; the main output is the FPFM head. The paper trains with SoftIoU averaged over all
  outputs (`model.loss`).

The paper's size (widths 16/32/64/128/256, blocks 2/2/2/2) has ~4.7 M parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nairstd.losses import soft_iou_loss
from nairstd.models.layers import ConvBNAct, pad_to_multiple
from nairstd.models.registry import register_model

from .common import main_logits, sized_config, upsample_to


@dataclass
class DNANetConfig:
    """DNANet configuration."""

    in_chans: int = 1  # grey infrared input
    widths: tuple[int, ...] = (16, 32, 64, 128, 256)  # node width per level (stride 1, 2, .., 16)
    blocks: tuple[int, ...] = (2, 2, 2, 2)  # Res-CSAM blocks per node at levels 1..4 (level 0: 1)
    ca_reduction: int = 16  # channel-attention MLP reduction (CBAM default)
    deep_supervision: bool = True  # extra heads on X[0,1..3] (returned with return_aux=True)


PRESETS: dict[str, dict[str, Any]] = {
    # Widths x 3/8 and one block per node: 1.6 GMAC per 256^2 image (paper size: 13.9).
    "tiny": dict(widths=(6, 12, 24, 48, 96), blocks=(1, 1, 1, 1)),
    "base": dict(widths=(16, 32, 64, 128, 256), blocks=(2, 2, 2, 2)),
}


class CSAM(nn.Module):
    """Channel then spatial attention (CBAM), applied multiplicatively."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        mid = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, mid, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, channels, 1, bias=False),
        )
        self.spatial = nn.Conv2d(2, 1, 7, padding=3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        ca = self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True))
        x = x * torch.sigmoid(ca)
        sa = self.spatial(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1))
        return x * torch.sigmoid(sa)


class ResCSAMBlock(nn.Module):
    """Two 3x3 convs + CSAM on the residual branch, 1x1 projection shortcut when widths differ."""

    def __init__(self, in_ch: int, out_ch: int, reduction: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvBNAct(in_ch, out_ch, 3), ConvBNAct(out_ch, out_ch, 3, act=False)
        )
        self.att = CSAM(out_ch, reduction)
        self.shortcut: nn.Module = nn.Identity()
        if in_ch != out_ch:
            self.shortcut = ConvBNAct(in_ch, out_ch, 1, act=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.att(self.body(x)) + self.shortcut(x))


def _node(in_ch: int, out_ch: int, n: int, reduction: int) -> nn.Sequential:
    layers = [ResCSAMBlock(in_ch, out_ch, reduction)]
    layers += [ResCSAMBlock(out_ch, out_ch, reduction) for _ in range(n - 1)]
    return nn.Sequential(*layers)


class DNANet(nn.Module):
    """Dense nested U-Net with channel-spatial attention and feature pyramid fusion (TIP'22)."""

    def __init__(self, config: DNANetConfig) -> None:
        super().__init__()
        self.config = c = config
        w = c.widths
        L = len(w)
        if len(c.blocks) != L - 1:
            raise ValueError(f"blocks needs {L - 1} entries (levels 1..{L - 1}), got {c.blocks}")
        self.levels = L
        nodes = {}
        for i in range(L):
            for j in range(L - i):
                if j == 0:
                    in_ch = c.in_chans if i == 0 else w[i - 1]
                else:
                    # X[i,0..j-1], up(X[i+1,j-1]) and, below level 0, down(X[i-1,j]).
                    in_ch = w[i] * j + w[i + 1] + (w[i - 1] if i > 0 else 0)
                n = 1 if i == 0 else c.blocks[i - 1]
                nodes[f"x{i}_{j}"] = _node(in_ch, w[i], n, c.ca_reduction)
        self.nodes = nn.ModuleDict(nodes)
        # FPFM: project the last node of each level to w[0], upsample, concatenate, fuse.
        self.fpfm_proj = nn.ModuleList(
            [ConvBNAct(w[i], w[0], 1) for i in range(1, L)]
        )  # for levels 1..L-1
        self.fpfm_fuse = _node(w[0] * L, w[0], 1, c.ca_reduction)
        self.head = nn.Conv2d(w[0], 1, 1)
        self.aux_heads = nn.ModuleList(
            [nn.Conv2d(w[0], 1, 1) for _ in range(L - 2)] if c.deep_supervision else []
        )

    @property
    def pad_multiple(self) -> int:
        return 2 ** (self.levels - 1)

    def forward(self, x: Tensor, return_aux: bool = False) -> Tensor | dict[str, Any]:
        H, W = x.shape[-2:]
        xp = pad_to_multiple(x, self.pad_multiple, "replicate")
        L = self.levels
        X: dict[tuple[int, int], Tensor] = {}
        X[0, 0] = self.nodes["x0_0"](xp)
        for i in range(1, L):
            X[i, 0] = self.nodes[f"x{i}_0"](F.max_pool2d(X[i - 1, 0], 2))
        # Column by column: column j needs column j-1 at every level and X[i-1, j] (same column).
        for j in range(1, L):
            for i in range(0, L - j):
                parts = [X[i, k] for k in range(j)]
                parts.append(upsample_to(X[i + 1, j - 1], X[i, 0]))
                if i > 0:
                    parts.append(F.max_pool2d(X[i - 1, j], 2))
                X[i, j] = self.nodes[f"x{i}_{j}"](torch.cat(parts, 1))
        pyramid = [X[0, L - 1]]
        for i in range(1, L):
            pyramid.append(upsample_to(self.fpfm_proj[i - 1](X[i, L - 1 - i]), xp))
        fused = self.fpfm_fuse(torch.cat(pyramid, 1))
        logits = self.head(fused)[..., :H, :W]
        if not return_aux:
            return logits
        aux = [h(X[0, j + 1])[..., :H, :W] for j, h in enumerate(self.aux_heads)]
        return {"logits": logits, "aux": aux}

    def loss(self, out: Tensor | dict[str, Any], target: Tensor) -> Tensor:
        """The paper's loss: SoftIoU, averaged over the main and the deep-supervision outputs."""
        outs = [main_logits(out)]
        if isinstance(out, dict):
            outs += list(out.get("aux", []))
        return sum(soft_iou_loss(o, target) for o in outs) / len(outs)


@register_model("dnanet")
def dnanet(size: str = "tiny", **overrides: Any) -> DNANet:
    """DNANet (Li et al., TIP 2022). `base` = the paper's size (~4.7 M); `tiny` 3/8 the widths."""
    return DNANet(sized_config(DNANetConfig, PRESETS, size, **overrides))
