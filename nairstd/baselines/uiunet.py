"""UIU-Net: U-Net in U-Net for infrared small object detection (Wu, Hong, Chanussot, IEEE TIP 2023).

* Every encoder / decoder stage of the outer U-Net is itself a small U-Net, a residual U-block
  (RSU-L, from U^2-Net): conv in -> an L-level inner encoder-decoder (max-pool down, bilinear up,
  a dilated conv at the bottom) -> + the input conv (residual). Deep stages, where the map is
  already small, use RSU-4F (dilations 1, 2, 4, 8 instead of pooling). Encoder stages: RSU-7, 6, 5,
  4, 4F, 4F; decoder stages mirror them.
* Interactive-cross attention (IC-A) fuses the up-sampled decoder feature (high) with the encoder
  skip (low) at decoder levels 5..2: a top-down global channel attention from the high feature
  modulates the low one, and a bottom-up spatial attention, computed from the *modulated* low
  feature (the "interaction"), modulates the high one; both are refined by a shared 3x3 conv and
  concatenated as the decoder stage's input.
* Resolution-maintenance deep supervision: a 3x3 side head on every decoder stage and on the
  deepest encoder stage, each up-sampled to full resolution; a 1x1 conv fuses the six side maps
  into the main output. The paper (like U^2-Net) trains with BCE summed over the fused and the six
  side outputs (`model.loss`).

The paper's size (U^2-Net widths) has ~50.5 M parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nairstd.models.layers import ConvBNAct, pad_to_multiple
from nairstd.models.registry import register_model

from .common import ChannelGate, main_logits, sized_config, upsample_to


@dataclass
class UIUNetConfig:
    """UIU-Net configuration (levels 1..6 of the outer U-Net, 1 = full resolution)."""

    in_chans: int = 1  # grey infrared input
    enc_out: tuple[int, ...] = (64, 128, 256, 512, 512, 512)  # RSU output width per encoder level
    enc_mid: tuple[int, ...] = (32, 32, 64, 128, 256, 256)  # RSU inner width per encoder level
    dec_mid: tuple[int, ...] = (16, 32, 64, 128, 256)  # RSU inner width per decoder level 1..5
    heights: tuple[int, ...] = (7, 6, 5, 4, 0, 0)  # RSU-L depth per level; 0 = RSU-4F (dilated)
    reduction: int = 4  # bottleneck ratio of the IC-A channel attention


PRESETS: dict[str, dict[str, Any]] = {
    # 1/8 - 1/16 of the paper's widths (the U^2-Net-P idea, narrower still) for 2-core CPU runs:
    # 1.0 GMAC per 256^2 image (paper size: 54).
    "tiny": dict(
        enc_out=(8, 16, 32, 64, 64, 64),
        enc_mid=(4, 8, 16, 16, 32, 32),
        dec_mid=(4, 8, 16, 16, 32),
    ),
    "base": dict(
        enc_out=(64, 128, 256, 512, 512, 512),
        enc_mid=(32, 32, 64, 128, 256, 256),
        dec_mid=(16, 32, 64, 128, 256),
    ),
}


class RSU(nn.Module):
    """Residual U-block RSU-L (`height` = L >= 3) or RSU-4F (`height` = 0: dilations, no pooling)."""

    def __init__(self, height: int, in_ch: int, mid: int, out_ch: int) -> None:
        super().__init__()
        self.dilated = height == 0
        depth = 4 if self.dilated else height  # number of inner encoder convs incl. the bottom one
        if depth < 3:
            raise ValueError(f"RSU height must be >= 3 (or 0 for RSU-4F), got {height}")
        self.conv_in = ConvBNAct(in_ch, out_ch, 3)
        if self.dilated:
            dil = [1, 2, 4, 8]
        else:
            dil = [1] * (depth - 1) + [2]
        enc = [ConvBNAct(out_ch, mid, 3, dilation=dil[0])]
        enc += [ConvBNAct(mid, mid, 3, dilation=d) for d in dil[1:]]
        self.enc = nn.ModuleList(enc)
        # Decoder: mirrors the encoder levels above the bottom, last conv back to out_ch.
        dec_dil = dil[: depth - 1][::-1] if self.dilated else [1] * (depth - 1)
        dec = [ConvBNAct(2 * mid, mid, 3, dilation=d) for d in dec_dil[:-1]]
        dec.append(ConvBNAct(2 * mid, out_ch, 3, dilation=dec_dil[-1]))
        self.dec = nn.ModuleList(dec)

    @property
    def pools(self) -> int:
        """Number of 2x poolings inside the block."""
        return 0 if self.dilated else len(self.enc) - 2

    def forward(self, x: Tensor) -> Tensor:
        hin = self.conv_in(x)
        feats = []
        h = hin
        n = len(self.enc)
        for i, conv in enumerate(self.enc):
            if i == n - 1:  # bottom: dilated conv on the last level, no pooling before it
                h = conv(h)
                break
            h = conv(h)
            feats.append(h)
            if not self.dilated and i < n - 2:
                h = F.max_pool2d(h, 2)
        for conv, skip in zip(self.dec, reversed(feats)):
            h = conv(torch.cat([upsample_to(h, skip), skip], 1))
        return h + hin


class SpatialGate(nn.Module):
    """Spatial attention: 3x3 conv on the channel-wise mean and max -> sigmoid (one map)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(
            self.conv(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1))
        )


class ICA(nn.Module):
    """Interactive-cross attention fusion of (high = up-sampled decoder, low = encoder skip)."""

    def __init__(self, high_ch: int, low_ch: int, reduction: int = 4) -> None:
        super().__init__()
        self.proj_high = ConvBNAct(high_ch, low_ch, 1)
        self.top_down = ChannelGate(low_ch, reduction)
        self.bottom_up = nn.Sequential(
            ConvBNAct(low_ch, max(low_ch // reduction, 1), 1), SpatialGate()
        )
        self.post = ConvBNAct(low_ch, low_ch, 3)  # shared by both modulated features

    def forward(self, high: Tensor, low: Tensor) -> Tensor:
        high = self.proj_high(high)
        td = self.top_down(high)
        bu = self.bottom_up(low * td)
        return torch.cat([self.post(2 * low * td), self.post(2 * high * bu)], 1)


class UIUNet(nn.Module):
    """UIU-Net (TIP'23): RSU stages in a 6-level U-Net, IC-A skip fusion, fused side outputs."""

    def __init__(self, config: UIUNetConfig) -> None:
        super().__init__()
        self.config = c = config
        n = len(c.enc_out)
        if not (len(c.enc_mid) == len(c.heights) == n and len(c.dec_mid) == n - 1):
            raise ValueError(
                "enc_out, enc_mid, heights need one entry per level, dec_mid one fewer"
            )
        ins = (c.in_chans,) + c.enc_out[:-1]
        self.enc = nn.ModuleList(
            [RSU(c.heights[i], ins[i], c.enc_mid[i], c.enc_out[i]) for i in range(n)]
        )
        # Decoder level i (0-based, i = n-2 .. 0) outputs the width of encoder level i-1 (level 0:
        # its own), so it can be fused with that skip one level up.
        dec_out = [c.enc_out[0]] + list(c.enc_out[: n - 2])
        self.dec_out = dec_out
        self.dec = nn.ModuleList(
            [RSU(c.heights[i], 2 * c.enc_out[i], c.dec_mid[i], dec_out[i]) for i in range(n - 1)]
        )
        # IC-A at decoder levels 1..n-2 (0-based); level 0 (full resolution) concatenates directly.
        high_ch = [None] + [
            c.enc_out[n - 1] if i == n - 2 else dec_out[i + 1] for i in range(1, n - 1)
        ]
        self.fuse = nn.ModuleList(
            [nn.Identity()] + [ICA(high_ch[i], c.enc_out[i], c.reduction) for i in range(1, n - 1)]
        )
        self.side = nn.ModuleList(
            [nn.Conv2d(dec_out[i], 1, 3, padding=1) for i in range(n - 1)]
            + [nn.Conv2d(c.enc_out[-1], 1, 3, padding=1)]
        )
        self.out_conv = nn.Conv2d(n, 1, 1)
        # Level i runs at stride 2^i and its RSU pools `pools` more times (decoder RSUs mirror the
        # encoder's): the input must divide by 2^(i + pools) at every level (32 at both sizes).
        self.pad_multiple = max(2 ** (i + self.enc[i].pools) for i in range(n))

    def forward(self, x: Tensor, return_aux: bool = False) -> Tensor | dict[str, Any]:
        H, W = x.shape[-2:]
        xp = pad_to_multiple(x, self.pad_multiple, "replicate")
        n = len(self.enc)
        skips = []
        h = xp
        for i, stage in enumerate(self.enc):
            if i > 0:
                h = F.max_pool2d(h, 2)
            h = stage(h)
            skips.append(h)
        dec_feats: list[Tensor] = [torch.empty(0)] * (n - 1)
        for i in range(n - 2, -1, -1):
            up = upsample_to(h, skips[i])
            fused = torch.cat([up, skips[i]], 1) if i == 0 else self.fuse[i](up, skips[i])
            h = self.dec[i](fused)
            dec_feats[i] = h
        sides = [upsample_to(head(f), xp) for head, f in zip(self.side, dec_feats + [skips[-1]])]
        logits = self.out_conv(torch.cat(sides, 1))[..., :H, :W]
        if not return_aux:
            return logits
        return {"logits": logits, "aux": [s[..., :H, :W] for s in sides]}

    def loss(self, out: Tensor | dict[str, Any], target: Tensor) -> Tensor:
        """The paper's loss: BCE summed over the fused output and every side output."""
        outs = [main_logits(out)]
        if isinstance(out, dict):
            outs += list(out.get("aux", []))
        t = target.float()
        return sum(F.binary_cross_entropy_with_logits(o.float(), t) for o in outs)


@register_model("uiunet")
def uiunet(size: str = "tiny", **overrides: Any) -> UIUNet:
    """UIU-Net (Wu et al., TIP 2023). `base` = the paper's size (~50 M); `tiny` 1/8 - 1/16 the widths."""
    return UIUNet(sized_config(UIUNetConfig, PRESETS, size, **overrides))
