"""ACM: asymmetric contextual modulation (Dai, Wu, Zhou, Barnard, WACV 2021).

A ResNet-20-style encoder (three stages of basic blocks after a stride-4 stem) and a U-Net decoder
whose skip fusions are ACM modules: the deep feature modulates the shallow one through *top-down
global* channel attention (GAP -> MLP -> sigmoid), while the shallow feature modulates the deep
one through *bottom-up local* point-wise channel attention (per-pixel 1x1 MLP -> sigmoid), so small
targets that survive only in the shallow layers can re-weight the semantic features:

    Z = conv3x3( 2 * X_low * G(X_high) + 2 * X_high * L(X_low) )

The paper's network ("ACM-U-Net", channels 8/16/32/64, 4 blocks per stage) has ~0.52 M
parameters; its published numbers use the SoftIoU loss, provided as `model.loss`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from nairstd.losses import soft_iou_loss
from nairstd.models.layers import ConvBNAct, pad_to_multiple
from nairstd.models.registry import register_model

from .common import (
    ChannelGate,
    FCNHead,
    PointwiseGate,
    main_logits,
    res_stage,
    sized_config,
    upsample_to,
)


@dataclass
class ACMConfig:
    """ACM-U-Net configuration."""

    in_chans: int = 1  # grey infrared input
    stem_width: int = 8  # width of the first two stem convs (the stem ends at widths[0])
    widths: tuple[int, int, int] = (16, 32, 64)  # stage widths at strides 4, 8, 16
    blocks: tuple[int, int, int] = (4, 4, 4)  # basic blocks per stage; decoder stages reuse 1, 2
    reduction: int = 4  # bottleneck ratio r of both ACM attention branches
    dropout: float = 0.1  # dropout in the FCN head


# ACM is small (0.52 M params, 0.44 GMAC per 256^2 image): `tiny` is the paper's size.
PRESETS: dict[str, dict[str, Any]] = {"tiny": {}, "base": {}}


class ACMFuse(nn.Module):
    """Asymmetric contextual modulation of a (deep, shallow) feature pair of equal width."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.top_down = ChannelGate(channels, reduction)  # global context from the deep feature
        self.bottom_up = PointwiseGate(channels, reduction)  # local detail from the shallow one
        self.post = ConvBNAct(channels, channels, 3)

    def forward(self, high: Tensor, low: Tensor) -> Tensor:
        # The factor 2 keeps the expected scale (the gates are ~0.5 at initialisation).
        return self.post(2 * low * self.top_down(high) + 2 * high * self.bottom_up(low))


class ACM(nn.Module):
    """ACM-U-Net (Dai et al., WACV'21): stride-4 stem, 3 residual stages, 2 ACM-fused up stages."""

    def __init__(self, config: ACMConfig) -> None:
        super().__init__()
        self.config = c = config
        w1, w2, w3 = c.widths
        # Stem as in the paper: BN on the raw input, three 3x3 convs (first stride 2), max-pool.
        self.stem = nn.Sequential(
            nn.BatchNorm2d(c.in_chans),
            ConvBNAct(c.in_chans, c.stem_width, 3, stride=2),
            ConvBNAct(c.stem_width, c.stem_width, 3),
            ConvBNAct(c.stem_width, w1, 3),
            nn.MaxPool2d(3, 2, 1),
        )
        self.layer1 = res_stage(w1, w1, c.blocks[0])
        self.layer2 = res_stage(w1, w2, c.blocks[1], stride=2)
        self.layer3 = res_stage(w2, w3, c.blocks[2], stride=2)
        self.up2 = nn.ConvTranspose2d(w3, w2, 4, 2, 1)
        self.fuse2 = ACMFuse(w2, c.reduction)
        self.dec2 = res_stage(w2, w2, c.blocks[1])
        self.up1 = nn.ConvTranspose2d(w2, w1, 4, 2, 1)
        self.fuse1 = ACMFuse(w1, c.reduction)
        self.dec1 = res_stage(w1, w1, c.blocks[0])
        self.head = FCNHead(w1, 1, c.dropout)

    pad_multiple = 16  # stride of layer3

    def forward(self, x: Tensor, return_aux: bool = False) -> Tensor | dict[str, Any]:
        H, W = x.shape[-2:]
        xp = pad_to_multiple(x, self.pad_multiple, "replicate")
        c1 = self.layer1(self.stem(xp))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        d2 = self.dec2(self.fuse2(self.up2(c3), c2))
        d1 = self.dec1(self.fuse1(self.up1(d2), c1))
        logits = upsample_to(self.head(d1), xp)[..., :H, :W]
        return {"logits": logits} if return_aux else logits

    def loss(self, out: Tensor | dict[str, Any], target: Tensor) -> Tensor:
        """The paper's loss: SoftIoU on the logits."""
        return soft_iou_loss(main_logits(out), target)


@register_model("acm")
def acm(size: str = "tiny", **overrides: Any) -> ACM:
    """ACM-U-Net (Dai et al., WACV 2021). `tiny` == `base` == the paper's size (~0.52 M)."""
    return ACM(sized_config(ACMConfig, PRESETS, size, **overrides))
