"""The Na-IRSTD forward pass as it was before issue 14's speed-ups, kept as a reference.

`reference_forward(model, x)` runs the original op sequence (per-module GPM / injection code,
separate gathers per stage) on the weights of a current `NaIRSTD`, so tests can check the
optimised forward against it (outputs equal to 1e-5) and `scripts/bench_ab.py --reference` can
time old and new in the same process. Only the native-branch, scoring and injection code paths
are copied; the detector's modules run under `unfused()`, their original eval forward (BN as
its own pass, out-of-place residual adds) before the eval folding in `nairstd.models.layers`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nairstd.models import layers
from nairstd.models.layers import pad_to_multiple, to_memory_format
from nairstd.models.scoring import k_for, select_top_k


@contextmanager
def unfused() -> Iterator[None]:
    """Run ConvBNAct, BasicBlock and DWSepBlock with their original forward (any mode)."""
    originals = {
        cls: cls.forward for cls in (layers.ConvBNAct, layers.BasicBlock, layers.DWSepBlock)
    }
    layers.ConvBNAct.forward = nn.Sequential.forward
    layers.BasicBlock.forward = lambda self, x: F.relu(x + self.conv2(self.conv1(x)))
    layers.DWSepBlock.forward = lambda self, x: F.relu(x + self.pw(self.dw(x)))
    try:
        yield
    finally:
        for cls, forward in originals.items():
            cls.forward = forward


def _patchify(x: Tensor, P: int) -> tuple[Tensor, tuple[int, int]]:
    B, C, H, W = x.shape
    rows, cols = H // P, W // P
    p = x.reshape(B, C, rows, P, cols, P).permute(0, 2, 4, 1, 3, 5)
    return p.reshape(B * rows * cols, C, P, P), (rows, cols)


def _attention(attn: nn.Module, q: Tensor) -> Tensor:
    B, Lq, D = q.shape
    q, k, v = attn.qkv(q).chunk(3, dim=-1)

    def split(t: Tensor) -> Tensor:
        return t.view(B, -1, attn.heads, D // attn.heads).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return attn.proj(out.transpose(1, 2).reshape(B, Lq, D))


def _gpm(gpm: nn.Module, y: Tensor, batch: int) -> tuple[Tensor, Tensor]:
    BN, d = y.shape[:2]
    t = y.mean(dim=(2, 3)).reshape(batch, BN // batch, d)
    a = _attention(gpm.attn, gpm.norm(t))
    y = y + a.reshape(BN, d, 1, 1)
    return y, t + a


def _dwsep(block: nn.Module, x: Tensor) -> Tensor:
    return F.relu(x + block.pw(block.dw(x)))


def _stage(stage: nn.Sequential, y: Tensor) -> Tensor:
    y = stage[0](y)
    for block in list(stage)[1:]:
        y = _dwsep(block, y) if hasattr(block, "dw") else block(y)
    return y


def _native(branch: nn.Module, x: Tensor) -> tuple[list[Tensor], Tensor, tuple[int, int]]:
    B = x.shape[0]
    y, grid = _patchify(x, branch.patch_size)
    y = to_memory_format(y, branch.channels_last)
    N = grid[0] * grid[1]
    feats, tokens = [], y.new_zeros(0)
    for stage, gpm in zip(branch.pde.stages, branch.gpm):
        y, tokens = _gpm(gpm, _stage(stage, y), B)
        feats.append(y.reshape(B, N, *y.shape[1:]))
    return feats, tokens, grid


def _windows6d(f: Tensor, w: int) -> Tensor:
    B, C, H, W = f.shape
    return f.view(B, C, H // w, w, W // w, w)


def _inject_block(block: nn.Module, g: Tensor, f: Tensor) -> Tensor:
    M, Lg, C = g.shape
    f = block.phi(f.flatten(2).transpose(1, 2))
    gn, fn = block.norm_g(g), block.norm_f(f)
    if block.pos:
        gn, fn = gn + block.pos_g, fn + block.pos_f
    k, v = block.kv(fn).chunk(2, dim=-1)
    q = block.q(gn)

    def split(t: Tensor) -> Tensor:
        m, L, c = t.shape
        return t.reshape(m, L, block.heads, c // block.heads).transpose(1, 2)

    a = F.scaled_dot_product_attention(split(q), split(k), split(v))
    a = a.transpose(1, 2).reshape(M, Lg, C)
    return torch.addcmul(g, block.gamma, a)


def _inject(inj: nn.Module, feats_bb, feats_na, selected: Tensor, grid) -> list[Tensor]:
    B, K = selected.shape
    N = grid[0] * grid[1]
    b = torch.arange(B, device=selected.device).repeat_interleave(K)
    i = selected.reshape(-1)
    r, c = i // grid[1], i % grid[1]
    flat = b * N + i
    fused = []
    for f_bb, f_na, block, s in zip(feats_bb, feats_na, inj.blocks, inj.strides):
        if isinstance(block, nn.Identity):
            fused.append(f_bb)
            continue
        w = inj.patch_size // s
        g = _windows6d(f_bb, w)[b, :, r, :, c, :]
        g = g.permute(0, 2, 3, 1).reshape(g.shape[0], w * w, f_bb.shape[1])
        f = f_na.reshape(B * N, *f_na.shape[2:]).index_select(0, flat)
        g = _inject_block(block, g, f)
        out = f_bb.clone()
        g = g.to(out.dtype).reshape(g.shape[0], w, w, -1).permute(0, 3, 1, 2)
        _windows6d(out, w)[b, :, r, :, c, :] = g
        fused.append(out)
    return fused


def reference_forward(model: nn.Module, x: Tensor, return_extras: bool = False):
    """The pre-issue-14 forward on `model`'s weights: `NaIRSTD` (patch branch) or `Detector`."""
    with unfused():
        if not hasattr(model, "native"):
            return model(x)
        return _reference_na_irstd(model, x, return_extras)


def _reference_na_irstd(model: nn.Module, x: Tensor, return_extras: bool):
    H, W = x.shape[-2:]
    c = model.config
    xp = to_memory_format(pad_to_multiple(x, model.pad_multiple, c.pad_mode), c.channels_last)
    feats_na, tokens, grid = _native(model.native, xp)
    patch_logits = model.scorer.mlp(model.scorer.norm(tokens)).squeeze(-1)
    scores = patch_logits.sigmoid()
    selected = select_top_k(scores.detach(), k_for(scores.shape[1], model.top_k))
    feats_bb, skip = model.detector.encode(xp)
    fused = _inject(model.injection, feats_bb, feats_na, selected, grid)
    logits = model.detector.decode(fused, skip, xp)[..., :H, :W]
    if not return_extras:
        return logits
    return {
        "logits": logits,
        "patch_logits": patch_logits,
        "selected": selected,
        "features_native": feats_na,
        "features_fused": fused,
    }
