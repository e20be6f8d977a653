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


def seg_loss(logits: Tensor, target: Tensor, eps: float = 1.0, empty_dice: bool = True) -> Tensor:
    """L_seg = BCE + Dice. empty_dice False: Dice over the images with a target only (the
    target-free recipe: on an empty 128x128 crop a mean probability of 0.01 already costs a Dice
    loss of 0.99, which drove training to predict nothing at all; BCE and the false-alarm loss
    handle those images)."""
    if empty_dice:
        return bce_loss(logits, target) + dice_loss(logits, target, eps)
    has = target.flatten(1).amax(1) > 0
    dice = dice_loss(logits[has], target[has], eps) if bool(has.any()) else logits.sum() * 0.0
    return bce_loss(logits, target) + dice


FA_TOP_K = 16  # pixels per target-free image the false-alarm loss looks at (~ a target's area)


def false_alarm_loss(logits: Tensor, target: Tensor, k: int = FA_TOP_K) -> Tensor:
    """BCE towards 0 of the k highest logits of each target-free image, averaged over them.

    The mean BCE over all pixels barely notices a few bright false targets in 65k background
    pixels; the top-k pixels are exactly the would-be false alarms, so this term pushes each
    target-free image's strongest responses below the threshold. Images with a target pixel are
    left out (0 when the batch has no target-free image).
    """
    flat = logits.float().flatten(1)
    empty = target.flatten(1).amax(1) <= 0
    if not bool(empty.any()):
        return flat.sum() * 0.0  # keeps the graph (and DDP's used-parameter bookkeeping) intact
    top = flat[empty].topk(min(k, flat.shape[1]), dim=1).values
    return F.binary_cross_entropy_with_logits(top, torch.zeros_like(top))


def soft_iou_loss(logits: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """SoftIoU loss (ACM, DNANet, AGPCNet, ISNet, RPCANet): 1 - mean_b (Σpg + s)/(Σp + Σg - Σpg + s).

    p = sigmoid(logits); sums per image, `smooth` = 1 as in those papers' code.
    """
    p = torch.sigmoid(logits.float()).flatten(1)
    g = target.float().flatten(1)
    inter = (p * g).sum(1)
    iou = (inter + smooth) / (p.sum(1) + g.sum(1) - inter + smooth)
    return 1.0 - iou.mean()
