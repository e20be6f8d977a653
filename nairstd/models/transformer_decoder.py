"""Query-based transformer decoder (Mask2Former / SimIR style, kept light for small Q)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import MLP, Attention, grid_pos_2d


class DecoderLayer(nn.Module):
    """Pre-norm layer: cross-attention to the memory, self-attention among queries, FFN."""

    def __init__(self, dim: int, heads: int, ffn_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.cross = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads)
        self.norm3 = nn.LayerNorm(dim)
        self.ffn = MLP(dim, ffn_ratio * dim, dim)

    def forward(self, q: Tensor, q_pos: Tensor, mem: Tensor, mem_pos: Tensor) -> Tensor:
        h = self.norm1(q)
        q = q + self.cross(h + q_pos, mem + mem_pos, mem)
        h = self.norm2(q)
        q = q + self.self_attn(h + q_pos, h + q_pos, h)
        return q + self.ffn(self.norm3(q))


class TransformerDecoder(nn.Module):
    """Q learnable queries attend to the flattened multi-scale memory; each query yields a mask
    embedding (MLP) and a confidence logit.

    Memory tokens get a linear projection, a learnable level embedding and (as keys) a 2D sine
    position of their normalised location, so queries can localise targets across image sizes.
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        mask_dim: int,
        num_queries: int = 4,
        num_layers: int = 2,
        heads: int = 2,
        num_levels: int = 3,
        ffn_ratio: int = 4,
    ) -> None:
        super().__init__()
        self.query_feat = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.query_pos = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.level_embed = nn.Parameter(torch.randn(num_levels, dim) * 0.02)
        self.mem_proj = nn.Linear(in_dim, dim)
        self.mem_norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, ffn_ratio) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)
        self.mask_embed = MLP(dim, dim, mask_dim, layers=3)
        self.confidence = nn.Linear(dim, 1)
        self._pos_cache: dict[tuple, Tensor] = {}

    def _pos(self, h: int, w: int, ref: Tensor) -> Tensor:
        """Sine positions of an h x w map, cached per size (they are constants)."""
        key = (h, w, ref.device, ref.dtype)
        if key not in self._pos_cache:
            self._pos_cache[key] = grid_pos_2d(
                h, w, self.level_embed.shape[1], ref.device, ref.dtype
            )
        return self._pos_cache[key]

    def forward(self, memory: list[Tensor]) -> tuple[Tensor, Tensor]:
        """memory: maps (B, in_dim, h_i, w_i) -> (mask embeddings (B, Q, mask_dim), conf (B, Q))."""
        toks, pos = [], []
        for lvl, m in enumerate(memory):
            h, w = m.shape[-2:]
            toks.append(m.flatten(2).transpose(1, 2))
            pos.append(self._pos(h, w, m) + self.level_embed[lvl])
        mem = self.mem_norm(self.mem_proj(torch.cat(toks, 1)))
        mem_pos = torch.cat(pos, 0).unsqueeze(0)
        B = mem.shape[0]
        q = self.query_feat.unsqueeze(0).expand(B, -1, -1)
        q_pos = self.query_pos.unsqueeze(0)
        for layer in self.layers:
            q = layer(q, q_pos, mem, mem_pos)
        q = self.norm(q)
        return self.mask_embed(q), self.confidence(q).squeeze(-1)
