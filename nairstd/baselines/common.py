"""Pieces shared by the deep baselines: size presets, padding, losses and small conv blocks.

Every deep baseline follows the same contract as the Na-IRSTD models (SPEC §2):
``forward(x: (B, 1, H, W)) -> logits (B, 1, H, W)`` for any H, W. Networks that downsample pad
the input (bottom/right) to the multiple they need and crop the logits back.
``forward(x, return_aux=True)`` returns a dict with at least ``"logits"`` plus the method's
auxiliary outputs (deep-supervision maps, edge map, reconstruction), and ``model.loss(out, target)``
implements the loss the method's paper prescribes (SoftIoU for most of them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch.nn.functional as F
from torch import Tensor, nn

from nairstd.losses import soft_iou_loss
from nairstd.models.layers import ConvBNAct

C = TypeVar("C")


def sized_config(
    cls: type[C], presets: Mapping[str, Mapping[str, Any]], size: str, **overrides: Any
) -> C:
    """Build the config dataclass `cls` from `presets[size]` plus keyword overrides.

    Unknown overrides raise TypeError naming the field (same contract as `models.make_config`);
    lists (from JSON / the CLI) become tuples so configs stay hashable.
    """
    if size not in presets:
        raise ValueError(f"unknown model size {size!r}; choose from {sorted(presets)}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in overrides:
        if key not in names:
            raise TypeError(f"{cls.__name__} has no field {key!r} (unknown model override)")
    values = dict(presets[size])
    values.update(overrides)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**values)


def count_params(model: nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def main_logits(out: Tensor | Mapping[str, Any]) -> Tensor:
    """The main logits from either a plain forward (Tensor) or a `return_aux=True` dict."""
    return out if isinstance(out, Tensor) else out["logits"]


# ------------------------------------------------------------------------------------------------
# Blocks
# ------------------------------------------------------------------------------------------------
class ResBlock(nn.Module):
    """ResNet basic block (two 3x3 convs); a 1x1 projection when the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvBNAct(in_ch, out_ch, 3, stride), ConvBNAct(out_ch, out_ch, 3, act=False)
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = ConvBNAct(in_ch, out_ch, 1, stride, act=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def res_stage(in_ch: int, out_ch: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """`blocks` ResBlocks, the first one changing width / stride."""
    layers = [ResBlock(in_ch, out_ch, stride)]
    layers += [ResBlock(out_ch, out_ch) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class FCNHead(nn.Sequential):
    """3x3 conv to in/4 channels -> BN -> ReLU -> dropout -> 1x1 conv (the FCN head of ACM et al.)."""

    def __init__(self, in_ch: int, out_ch: int = 1, dropout: float = 0.1) -> None:
        mid = max(in_ch // 4, 1)
        super().__init__(ConvBNAct(in_ch, mid, 3), nn.Dropout(dropout), nn.Conv2d(mid, out_ch, 1))


class ChannelGate(nn.Sequential):
    """Global channel attention: GAP -> 1x1 (C -> C/r) -> ReLU -> 1x1 (C/r -> C) -> sigmoid.

    The papers put BatchNorm after the two 1x1 convs; after a global pool BN normalises over the
    batch only (B values per channel), which fails at batch 1 and is noisy at small batches, so we
    use biased convs instead.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        mid = max(channels // reduction, 1)
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, mid, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, channels, 1),
            nn.Sigmoid(),
        )


class PointwiseGate(nn.Sequential):
    """Local (per-pixel) channel attention: 1x1 (C -> C/r) -> BN -> ReLU -> 1x1 -> BN -> sigmoid."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        mid = max(channels // reduction, 1)
        super().__init__(
            ConvBNAct(channels, mid, 1),
            ConvBNAct(mid, channels, 1, act=False),
            nn.Sigmoid(),
        )


def upsample_to(x: Tensor, ref: Tensor | tuple[int, int]) -> Tensor:
    """Bilinear resize of `x` to the spatial size of `ref` (a tensor or an (H, W) pair)."""
    size = tuple(ref.shape[-2:]) if isinstance(ref, Tensor) else tuple(ref)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class SoftIoULoss:
    """Mixin: `model.loss` = SoftIoU on the main logits (ACM, AGPCNet)."""

    def loss(self, out: Tensor | Mapping[str, Any], target: Tensor) -> Tensor:
        """The paper's loss: SoftIoU on the logits."""
        return soft_iou_loss(main_logits(out), target)


class ACMStyleUNet(nn.Module):
    """The U-Net that ACM and ISNet share: a stride-4 stem (BN on the raw input, three 3x3 convs,
    the first with stride 2, max-pool), three residual stages and two up stages whose skip fusion
    is the method's own block (`fuse(width)`)."""

    pad_multiple = 16  # stride of layer3

    def build_unet(self, c: Any, fuse: Callable[[int], nn.Module]) -> None:
        """Create the U-Net's modules (in this order: their names and init order are the state
        dict's) from a config with in_chans, stem_width, widths and blocks."""
        w1, w2, w3 = c.widths
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
        self.fuse2 = fuse(w2)
        self.dec2 = res_stage(w2, w2, c.blocks[1])
        self.up1 = nn.ConvTranspose2d(w2, w1, 4, 2, 1)
        self.fuse1 = fuse(w1)
        self.dec1 = res_stage(w1, w1, c.blocks[0])

    def unet(self, xp: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(c3, d2, d1): the deepest encoder feature and the two decoder features."""
        c1 = self.layer1(self.stem(xp))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        d2 = self.dec2(self.fuse2(self.up2(c3), c2))
        d1 = self.dec1(self.fuse1(self.up1(d2), c1))
        return c3, d2, d1
