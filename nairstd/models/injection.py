"""Cross-scale injection of the selected native patches into the detector features (Eq. 4, 13).

At stage l (stride s_l) the map F_l^bb is cut into (P/s_l) x (P/s_l) windows on the patch
lattice: patch (r, c) <-> window rows r*P/s_l .. (r+1)*P/s_l - 1, same for columns, so window
index r * cols + c is patch index r * cols + c. Only the K selected windows are touched; the
gather / scatter is batched over images and patches with index tensors (no Python loop).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import grid_pos_2d
from .native_branch import NativeStage


def window_index(selected: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """Selected patch indices (B, K) -> flat (B*K,) image, window-row and window-column indices."""
    B, K = selected.shape
    b = torch.arange(B, device=selected.device).repeat_interleave(K)
    i = selected.reshape(-1)
    return b, i // grid[1], i % grid[1]


def _windows6d(f: Tensor, window: int) -> Tensor:
    """(B, C, H, W) -> view (B, C, rows, window, cols, window); keeps f's memory format."""
    B, C, H, W = f.shape
    return f.view(B, C, H // window, window, W // window, window)


def gather_windows(f: Tensor, b: Tensor, r: Tensor, c: Tensor, window: int) -> Tensor:
    """Windows (r, c) of images b of f (B, C, H, W) -> tokens (M, window^2, C), row-major inside.

    Window (r, c) covers rows r*window .. (r+1)*window - 1 and columns c*window .. (c+1)*window - 1.
    """
    g = _windows6d(f, window)[b, :, r, :, c, :]  # (M, C, window, window)
    return g.permute(0, 2, 3, 1).reshape(g.shape[0], window * window, f.shape[1])


def scatter_windows(f: Tensor, g: Tensor, b: Tensor, r: Tensor, c: Tensor, window: int) -> Tensor:
    """Out-of-place inverse of `gather_windows`: a copy of f with windows (b, r, c) set to g.

    clone() keeps f's memory format, so untouched values and the layout are bit-identical.
    Under tracing (ONNX export) the windows are written by an out-of-place `index_put` instead:
    the exporter drops an in-place write into a view of a view, which would silently cut the
    whole native branch out of the exported graph.
    """
    M, _, C = g.shape
    g = g.to(f.dtype).reshape(M, window, window, C).permute(0, 3, 1, 2)  # dtype: AMP safety
    if torch.jit.is_tracing():
        return _scatter_out_of_place(f, g, b, r, c, window)
    out = f.clone()
    _windows6d(out, window)[b, :, r, :, c, :] = g
    return out


def _scatter_out_of_place(
    f: Tensor, g: Tensor, b: Tensor, r: Tensor, c: Tensor, window: int
) -> Tensor:
    """`scatter_windows` as one out-of-place index_put on (B, rows, cols, C, w, w) (ScatterND)."""
    B, C, H, W = f.shape
    cells = _windows6d(f, window).permute(0, 2, 4, 1, 3, 5)
    cells = cells.index_put((b, r, c), g)
    return cells.permute(0, 3, 1, 4, 2, 5).reshape(B, C, H, W)


class InjectionBlock(nn.Module):
    """Eq. 13 for one stage: the window's semantic tokens G attend to the patch's native tokens.

    G <- G + gamma * softmax((G Wq)(phi(F) Wk)^T / sqrt(C)) (phi(F) Wv), gamma initialised to 0.
    Our additions (config `inject_norm`, `inject_pos`): pre-LayerNorms on both token sets (native
    and semantic features live on different scales) and in-patch sine positions added to the
    normalised tokens, so a window token can tell which native pixels lie under it.
    """

    def __init__(
        self,
        sem_dim: int,
        native_dim: int,
        window: int,
        native_size: int,
        heads: int = 1,
        norm: bool = True,
        pos: bool = True,
        gamma_init: float = 0.0,
    ) -> None:
        super().__init__()
        if sem_dim % heads:
            raise ValueError(f"inject_heads {heads} must divide the stage width {sem_dim}")
        self.heads = heads
        self.phi = nn.Linear(native_dim, sem_dim)  # phi_l: d_l -> C_l
        self.norm_g = nn.LayerNorm(sem_dim) if norm else nn.Identity()
        self.norm_f = nn.LayerNorm(sem_dim) if norm else nn.Identity()
        self.q = nn.Linear(sem_dim, sem_dim)  # W_q
        self.kv = nn.Linear(sem_dim, 2 * sem_dim)  # W_k and W_v in one matmul
        self.gamma = nn.Parameter(torch.tensor(float(gamma_init)))
        self.pos = pos
        if pos:  # normalised in-patch coordinates of window tokens and native pixels
            self.register_buffer("pos_g", grid_pos_2d(window, window, sem_dim), persistent=False)
            self.register_buffer(
                "pos_f", grid_pos_2d(native_size, native_size, sem_dim), persistent=False
            )

    def _split(self, t: Tensor) -> Tensor:
        M, L, C = t.shape
        return t.reshape(M, L, self.heads, C // self.heads).transpose(1, 2)

    def forward(self, g: Tensor, f: Tensor) -> Tensor:
        """g (M, w^2, C) window tokens, f (M, d, P_l, P_l) native patch -> updated g."""
        M, Lg, C = g.shape
        f = self.phi(f.flatten(2).transpose(1, 2))  # (M, P_l^2, C)
        gn, fn = self.norm_g(g), self.norm_f(f)
        if self.pos:
            gn, fn = gn + self.pos_g, fn + self.pos_f
        k, v = self.kv(fn).chunk(2, dim=-1)
        q = self.q(gn)
        a = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v))
        a = a.transpose(1, 2).reshape(M, Lg, C)  # softmax scale 1/sqrt(C / heads) = 1/sqrt(C_l)
        return torch.addcmul(g, self.gamma, a)  # g + gamma * a; exactly g when gamma = 0


class CrossScaleInjection(nn.Module):
    """One `InjectionBlock` per detector stage whose stride divides P (stage l needs P % s_l == 0)."""

    def __init__(
        self,
        widths: tuple[int, ...],
        native_widths: tuple[int, ...],
        strides: tuple[int, ...],
        patch_size: int,
        heads: int = 1,
        norm: bool = True,
        pos: bool = True,
        gamma_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.strides = strides
        self.blocks = nn.ModuleList()
        for i, (c, d, s) in enumerate(zip(widths, native_widths, strides)):
            if patch_size % s:  # a window would be a fraction of a token: skip this stage
                self.blocks.append(nn.Identity())
                continue
            self.blocks.append(
                InjectionBlock(c, d, patch_size // s, patch_size >> i, heads, norm, pos, gamma_init)
            )

    def forward(
        self,
        feats_bb: list[Tensor],
        feats_na: list[Tensor] | list[NativeStage],
        selected: Tensor,
        grid: tuple[int, int],
    ) -> list[Tensor]:
        """feats_bb [(B, C_l, H_l, W_l)], feats_na [(B, N, d_l, P_l, P_l)] (or the branch's
        `NativeStage`s, whose add-back is then applied to the selected rows only), selected (B, K)
        -> fused maps."""
        B, N = selected.shape[0], grid[0] * grid[1]
        b, r, c = window_index(selected, grid)
        flat = b * N + selected.reshape(-1)  # row b*N + i of the (B*N, ...) native features
        fused = []
        for f_bb, f_na, block, s in zip(feats_bb, feats_na, self.blocks, self.strides):
            if isinstance(block, nn.Identity):
                fused.append(f_bb)
                continue
            w = self.patch_size // s
            g = gather_windows(f_bb, b, r, c, w)
            if isinstance(f_na, NativeStage):
                f = f_na.rows(flat)
            else:
                f = f_na.reshape(B * N, *f_na.shape[2:]).index_select(0, flat)
            fused.append(scatter_windows(f_bb, block(g, f), b, r, c, w))
        return fused
