"""Hierarchical convolutional encoder E_1..E_L of the detector (Eq. 1)."""

from __future__ import annotations

from torch import Tensor, nn

from .layers import BasicBlock, ConvBNAct


class Encoder(nn.Module):
    """Stride-4 stem, then one stage per width, each halving the resolution (strides 4, 8, 16, 32).

    F_l^bb = E_l(F_{l-1}^bb), F_0^bb = x. The stem's stride-2 map is returned as well: it is the
    shallow high-resolution skip the pixel decoder uses when `output_stride` < 4.
    """

    def __init__(self, in_chans: int, widths: tuple[int, ...], depths: tuple[int, ...]) -> None:
        super().__init__()
        if len(widths) != len(depths):
            raise ValueError(f"widths {widths} and depths {depths} differ in length")
        self.skip_chans = max(8, widths[0] // 2)
        self.stem1 = ConvBNAct(in_chans, self.skip_chans, 3, 2)  # stride 2
        self.stem2 = ConvBNAct(self.skip_chans, widths[0], 3, 2)  # stride 4
        self.stages = nn.ModuleList()
        for i, (w, d) in enumerate(zip(widths, depths)):
            down = [] if i == 0 else [ConvBNAct(widths[i - 1], w, 3, 2)]
            self.stages.append(nn.Sequential(*down, *[BasicBlock(w) for _ in range(d)]))
        self.strides = tuple(4 * 2**i for i in range(len(widths)))

    def forward(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """x (B, C, H, W) -> ([F_1^bb .. F_L^bb], stride-2 skip)."""
        skip = self.stem1(x)
        f = self.stem2(skip)
        feats = []
        for stage in self.stages:
            f = stage(f)
            feats.append(f)
        return feats, skip
