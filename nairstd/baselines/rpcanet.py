"""RPCANet: deep unfolding of RPCA for infrared small target detection (Wu, Dai, et al., WACV 2024).

The image D is modelled as a low-rank background B plus a sparse target T (relaxed RPCA,
min ||B||_* + lambda ||T||_1 + mu/2 ||D - B - T||^2). Unfolding K iterations of its proximal
solver, each stage k replaces the proximal operators by small CNNs:

* BEM (background estimation): B_k = (D_{k-1} - T_{k-1}) + Net_B(D_{k-1} - T_{k-1})
  - a residual CNN playing the role of singular-value thresholding.
* TEM (target extraction): X = T_{k-1} + D_{k-1} - B_k (a gradient step on the data term),
  T_k = X - eps_k * Net_T(X) - a learned shrinkage with a learnable step eps_k (init 0.01).
* IRM (image reconstruction): D_k = Net_D(B_k + T_k), so the next stage sees a refined image.

T_0 = 0, D_0 = the input. The output is the target map T_K, used directly as the logits (the
paper applies the sigmoid inside its SoftIoU loss). The paper's loss (`model.loss`):
SoftIoU(T_K, mask) + 0.01 * MSE(D_K, input), so the unfolded model also reconstructs its input.

Fully convolutional at stride 1: any H, W works without padding. The paper's size (K = 6 stages,
32 channels, 3 / 6 / 3 hidden conv layers in BEM / TEM / IRM) has ~0.68 M parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nairstd.losses import soft_iou_loss
from nairstd.models.registry import register_model

from .common import main_logits, sized_config


@dataclass
class RPCANetConfig:
    """RPCANet configuration."""

    in_chans: int = 1  # grey infrared input (the RPCA model is per channel; keep 1)
    stages: int = 6  # K unfolded iterations
    channels: int = 32  # width of every proximal CNN
    bem_layers: int = 3  # hidden 3x3 conv layers in the background estimation module
    tem_layers: int = 6  # hidden 3x3 conv layers in the target extraction module
    irm_layers: int = 3  # hidden 3x3 conv layers in the image reconstruction module
    eps_init: float = 0.01  # initial TEM step size eps_k
    recon_weight: float = 0.01  # weight of the MSE(D_K, input) term in `model.loss`


PRESETS: dict[str, dict[str, Any]] = {
    # Every layer runs at full resolution (44 GMAC per 256^2 image at the paper's size): `tiny`
    # keeps the K = 6 unfolding but uses 8 channels and thinner proximal CNNs (1.8 GMAC).
    "tiny": dict(stages=6, channels=8, bem_layers=2, tem_layers=3, irm_layers=2),
    "base": dict(stages=6, channels=32, bem_layers=3, tem_layers=6, irm_layers=3),
}


def _prox_net(in_ch: int, width: int, hidden: int, norm: bool) -> nn.Sequential:
    """conv(in -> width) [+BN] + ReLU, `hidden` x (conv(width -> width) [+BN] + ReLU), conv(width -> in)."""
    layers: list[nn.Module] = []
    ch = in_ch
    for _ in range(hidden + 1):
        layers.append(nn.Conv2d(ch, width, 3, padding=1))
        if norm:
            layers.append(nn.BatchNorm2d(width))
        layers.append(nn.ReLU(inplace=True))
        ch = width
    layers.append(nn.Conv2d(width, in_ch, 3, padding=1))
    return nn.Sequential(*layers)


class RPCAStage(nn.Module):
    """One unfolded iteration: BEM -> TEM -> IRM."""

    def __init__(self, c: RPCANetConfig) -> None:
        super().__init__()
        # BN in the background / reconstruction nets; the target net has none (as in the paper):
        # its output is a sparse residual whose scale a batch statistic would distort.
        self.bem = _prox_net(c.in_chans, c.channels, c.bem_layers, norm=True)
        self.tem = _prox_net(c.in_chans, c.channels, c.tem_layers, norm=False)
        self.irm = _prox_net(c.in_chans, c.channels, c.irm_layers, norm=True)
        self.eps = nn.Parameter(torch.tensor([c.eps_init]))

    def forward(self, D: Tensor, T: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r = D - T
        B = r + self.bem(r)
        X = T + D - B
        T = X - self.eps * self.tem(X)
        D = self.irm(B + T)
        return D, T, B


class RPCANet(nn.Module):
    """RPCANet (WACV'24): K unfolded RPCA stages; logits = the final target map T_K."""

    def __init__(self, config: RPCANetConfig) -> None:
        super().__init__()
        self.config = config
        self.stages = nn.ModuleList([RPCAStage(config) for _ in range(config.stages)])
        # Xavier-normal conv init, as in the paper's code (the unfolded steps start near identity).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)

    pad_multiple = 1

    def forward(self, x: Tensor, return_aux: bool = False) -> Tensor | dict[str, Any]:
        D, T = x, torch.zeros_like(x)
        B = x
        for stage in self.stages:
            D, T, B = stage(D, T)
        if not return_aux:
            return T
        return {"logits": T, "recon": D, "background": B, "image": x}

    def loss(self, out: Tensor | dict[str, Any], target: Tensor) -> Tensor:
        """SoftIoU(T_K, mask) + recon_weight * MSE(D_K, input) (the reconstruction term needs the
        `return_aux=True` dict; with plain logits only SoftIoU is used)."""
        loss = soft_iou_loss(main_logits(out), target)
        if isinstance(out, dict) and "recon" in out and self.config.recon_weight > 0:
            loss = loss + self.config.recon_weight * F.mse_loss(
                out["recon"].float(), out["image"].float()
            )
        return loss


@register_model("rpcanet")
def rpcanet(size: str = "tiny", **overrides: Any) -> RPCANet:
    """RPCANet (Wu et al., WACV 2024). `base` = the paper's size (~0.68 M); `tiny` 8 channels."""
    return RPCANet(sized_config(RPCANetConfig, PRESETS, size, **overrides))
