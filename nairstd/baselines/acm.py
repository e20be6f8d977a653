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

from nairstd.models.layers import ConvBNAct, pad_to_multiple
from nairstd.models.registry import register_model

from .common import (
    ACMStyleUNet,
    ChannelGate,
    FCNHead,
    PointwiseGate,
    SoftIoULoss,
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


class ACM(SoftIoULoss, ACMStyleUNet):
    """ACM-U-Net (Dai et al., WACV'21): stride-4 stem, 3 residual stages, 2 ACM-fused up stages."""

    def __init__(self, config: ACMConfig) -> None:
        super().__init__()
        self.config = c = config
        self.build_unet(c, lambda width: ACMFuse(width, c.reduction))
        self.head = FCNHead(c.widths[0], 1, c.dropout)

    def forward(self, x: Tensor, return_aux: bool = False) -> Tensor | dict[str, Any]:
        H, W = x.shape[-2:]
        xp = pad_to_multiple(x, self.pad_multiple, "replicate")
        _, _, d1 = self.unet(xp)
        logits = upsample_to(self.head(d1), xp)[..., :H, :W]
        return {"logits": logits} if return_aux else logits


@register_model("acm")
def acm(size: str = "tiny", **overrides: Any) -> ACM:
    """ACM-U-Net (Dai et al., WACV 2021). `tiny` == `base` == the paper's size (~0.52 M)."""
    return ACM(sized_config(ACMConfig, PRESETS, size, **overrides))
