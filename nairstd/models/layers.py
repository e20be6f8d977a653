"""Small building blocks shared by the model components."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nairstd.grid import pad_amount


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Eval-mode Conv -> BN as one conv: (weight, bias) with the BN statistics folded in."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale.reshape(-1, 1, 1, 1)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return weight, bias


class ConvBNAct(nn.Sequential):
    """Conv2d -> BatchNorm -> ReLU (ReLU: the cheapest activation on CPU; optional).

    Padding keeps the size ("same" for stride 1): dilation x kernel // 2 per axis unless given.
    Shared by the Na-IRSTD components and the baselines. In eval mode the BN is folded into the
    conv and the ReLU runs in place: at native resolution each elementwise op is a full pass over
    the pixels, so one conv replaces three passes (same values to float error; training keeps the
    plain module sequence).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int | tuple[int, int] = 3,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
        padding: int | tuple[int, int] | None = None,
        dilation: int = 1,
    ) -> None:
        k = (kernel, kernel) if isinstance(kernel, int) else kernel
        pad = (dilation * (k[0] // 2), dilation * (k[1] // 2)) if padding is None else padding
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, k, stride, pad, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return super().forward(x)
        conv = self[0]
        w, b = fold_bn(conv, self[1])
        y = F.conv2d(x, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)
        return y.relu_() if len(self) > 2 else y


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with an identity shortcut."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(dim, dim, 3)
        self.conv2 = ConvBNAct(dim, dim, 3, act=False)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:  # in place on the fresh conv output: one pass fewer
            return self.conv2(self.conv1(x)).add_(x).relu_()
        return F.relu(x + self.conv2(self.conv1(x)))


class DWSepBlock(nn.Module):
    """Depthwise 3x3 -> pointwise 1x1 -> BN, identity shortcut, ReLU (one norm per block, as in
    ConvNeXt: at native resolution every elementwise op costs a full pass over the pixels)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)
        self.pw = ConvBNAct(dim, dim, 1, act=False)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:  # in place on the fresh conv output: one pass fewer
            return self.pw(self.dw(x)).add_(x).relu_()
        return F.relu(x + self.pw(self.dw(x)))


def make_block(kind: str, dim: int) -> nn.Module:
    if kind == "conv":
        return BasicBlock(dim)
    if kind == "dwsep":
        return DWSepBlock(dim)
    raise ValueError(f"unknown block kind {kind!r}; choose 'conv' or 'dwsep'")


class MLP(nn.Sequential):
    """Linear layers with GELU between them."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int = 2) -> None:
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        mods: list[nn.Module] = []
        for i in range(layers):
            mods.append(nn.Linear(dims[i], dims[i + 1]))
            if i < layers - 1:
                mods.append(nn.GELU())
        super().__init__(*mods)


class Attention(nn.Module):
    """Multi-head attention on (B, L, dim) tokens via F.scaled_dot_product_attention.

    Written out (rather than nn.MultiheadAttention) so FLOP counting under the math SDPA backend
    sees every matmul. `forward(x)` is self-attention with one fused qkv matmul;
    `forward(q, kv, v)` is cross-attention (queries, keys and values from separate inputs).
    """

    def __init__(self, dim: int, heads: int = 1, out_proj: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim) if out_proj else nn.Identity()

    def _split(self, t: Tensor) -> Tensor:
        B, L, D = t.shape
        return t.view(B, L, self.heads, D // self.heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor | None = None, v: Tensor | None = None) -> Tensor:
        B, Lq, D = q.shape
        if k is None:  # self-attention: q = k = v input
            q, k, v = self.qkv(q).chunk(3, dim=-1)
        else:
            if v is None:
                raise ValueError("cross-attention needs both k and v")
            w, b = self.qkv.weight, self.qkv.bias
            q = F.linear(q, w[:D], b[:D])
            k = F.linear(k, w[D : 2 * D], b[D : 2 * D])
            v = F.linear(v, w[2 * D :], b[2 * D :])
        out = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v))
        return self.proj(out.transpose(1, 2).reshape(B, Lq, D))


def sine_pos_2d(ys: Tensor, xs: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """DETR-style sine embedding of normalised coordinates in [0, 1]: (L,) y and x -> (L, dim).

    dim // 4 frequencies per axis (sin and cos); leftover channels (dim not a multiple of 4) are 0.
    """
    nf = dim // 4
    out = ys.new_zeros(ys.shape[0], dim)
    if nf == 0:
        return out
    freqs = temperature ** (-torch.arange(nf, dtype=ys.dtype, device=ys.device) / nf)
    ay = ys[:, None] * 2 * math.pi * freqs
    ax = xs[:, None] * 2 * math.pi * freqs
    out[:, : 4 * nf] = torch.cat([ay.sin(), ay.cos(), ax.sin(), ax.cos()], dim=1)
    return out


def grid_pos_2d(h: int, w: int, dim: int, device=None, dtype=torch.float32) -> Tensor:
    """Sine embedding of the cell centres of an h x w grid in normalised coords: (h*w, dim), row-major."""
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return sine_pos_2d(yy.reshape(-1), xx.reshape(-1), dim)


def to_memory_format(x: Tensor, channels_last: bool) -> Tensor:
    """x in NHWC (channels_last) or NCHW layout."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return x.contiguous(memory_format=fmt)


def pad_to_multiple(x: Tensor, multiple: int, mode: str = "zeros") -> Tensor:
    """Pad (B, C, H, W) at the bottom / right to multiples of `multiple`.

    Bottom/right only, so the patch lattice keeps its origin at the top-left pixel (the labels and
    the metrics use the same lattice, `nairstd.grid`). "reflect" falls back to "replicate" when the
    image is smaller than the pad (reflect needs pad < size). The baselines pad with "replicate":
    they respond to local contrast, and a zero border next to a bright sky would be a strong
    artificial edge.

    Under tracing (ONNX export) the pad amounts are traced values and the pad always runs (by
    zero where the size is a multiple already): a Python shortcut would freeze the traced size's
    choice into a graph that serves other sizes. (The reflect/replicate choice stays frozen:
    `nairstd.export` refuses a size-independent graph of a "reflect" model.)
    """
    H, W = x.shape[-2:]
    ph, pw = pad_amount(H, W, multiple)
    if not torch.jit.is_tracing() and ph == 0 and pw == 0:
        return x
    if mode == "zeros":
        return F.pad(x, (0, pw, 0, ph))
    if mode == "reflect":
        m = "reflect" if ph < H and pw < W else "replicate"
        return F.pad(x, (0, pw, 0, ph), mode=m)
    if mode == "replicate":
        return F.pad(x, (0, pw, 0, ph), mode="replicate")
    raise ValueError(f"unknown pad_mode {mode!r}; choose 'zeros', 'reflect' or 'replicate'")
