"""Losses: L_seg (SPEC §2.5, Eq. 14-16: BCE + soft Dice, Dice per image, averaged) and the
baselines' SoftIoU. Below models and training: both import from here."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def dice_loss(logits: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    """1 - (2 sum(p g) + eps) / (sum(p) + sum(g) + eps) per image, averaged over the batch.

    p = sigmoid(logits). eps = 1 keeps images without targets well defined (an all-background
    prediction of an empty image scores ~0 loss).
    """
    p = torch.sigmoid(logits.float()).flatten(1)
    g = target.float().flatten(1)
    inter = (p * g).sum(1)
    dice = (2 * inter + eps) / (p.sum(1) + g.sum(1) + eps)
    return (1 - dice).mean()


def bce_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Pixel-wise BCE between sigmoid(logits) and the 0/1 target, mean over all pixels."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def seg_loss(logits: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    """L_seg = BCE + Dice."""
    return bce_loss(logits, target) + dice_loss(logits, target, eps)


def soft_iou_loss(logits: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """SoftIoU loss (ACM, DNANet, AGPCNet, ISNet, RPCANet): 1 - mean_b (Σpg + s)/(Σp + Σg - Σpg + s).

    p = sigmoid(logits); sums per image, `smooth` = 1 as in those papers' code.
    """
    p = torch.sigmoid(logits.float()).flatten(1)
    g = target.float().flatten(1)
    inter = (p * g).sum(1)
    iou = (inter + smooth) / (p.sum(1) + g.sum(1) - inter + smooth)
    return 1.0 - iou.mean()
