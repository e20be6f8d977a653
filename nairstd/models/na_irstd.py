"""Na-IRSTD: detector + native-resolution branch + scorer + Top-K cross-scale injection (SPEC §2)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from .config import NaIRSTDConfig, make_config
from .detector import Detector
from .injection import CrossScaleInjection
from .layers import pad_to_multiple, to_memory_format
from .native_branch import DenseNativeBranch, NativeStage, PatchNativeBranch
from .registry import register_model
from .scoring import ScoringMLP, k_for, select_top_k


class NaIRSTD(nn.Module):
    """Full model. `config.native` picks the branch: "patch" (PDE + GPM, the paper's 2D+1D design)
    or "dense" (the Non-Patch-based CNN of Table IV).

    Forward: pad -> native branch F_l^na (Eq. 2, 5-9) -> scores s_i -> hard Top-K I (Eq. 3, on
    detached scores) -> detector encoder F_l^bb (Eq. 1) -> inject the K selected patches into every
    stage (Eq. 4, 13) -> pixel decoder + transformer decoder on the fused maps -> crop.
    """

    def __init__(self, config: NaIRSTDConfig) -> None:
        super().__init__()
        c = config
        if c.input_downsample != 1:
            raise ValueError("Na-IRSTD runs at native resolution: input_downsample must be 1")
        if len(c.native_widths) != len(c.widths) or len(c.native_depths) != len(c.widths):
            raise ValueError("native_widths / native_depths need one entry per detector stage")
        if c.patch_size % 2 ** (len(c.widths) - 1):
            raise ValueError(
                f"patch_size {c.patch_size} must be divisible by {2 ** (len(c.widths) - 1)}"
            )
        k_for(1, c.top_k)  # validate early
        self.config = c
        self.detector = Detector(c)
        if c.native == "patch":
            self.native = PatchNativeBranch(
                c.patch_size,
                c.in_chans,
                c.native_widths,
                c.native_depths,
                c.native_block,
                c.gpm_head_dim,
                c.channels_last,
            )
        elif c.native == "dense":
            self.native = DenseNativeBranch(
                c.patch_size, c.in_chans, c.native_widths, c.native_depths, c.native_block
            )
        else:
            raise ValueError(f"native must be 'patch' or 'dense', got {c.native!r}")
        self.scorer = ScoringMLP(c.native_widths[-1], c.score_hidden)
        self.injection = CrossScaleInjection(
            c.widths,
            c.native_widths,
            self.detector.strides,
            c.patch_size,
            heads=c.inject_heads,
            norm=c.inject_norm,
            pos=c.inject_pos,
            gamma_init=c.gamma_init,
        )
        self._scorer_frozen = False
        if c.channels_last:
            # NHWC conv weights make oneDNN run NHWC even where a 1-channel input is ambiguous.
            self.to(memory_format=torch.channels_last)

    # -- attributes of the public contract --------------------------------------------------
    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    @property
    def top_k(self) -> int | float:
        return self.config.top_k

    @top_k.setter
    def top_k(self, value: int | float) -> None:
        k_for(1, value)
        self.config.top_k = value

    @property
    def pad_multiple(self) -> int:
        return math.lcm(self.patch_size, self.detector.pad_multiple)

    # -- parameter groups (they partition self.parameters()) ----------------------------------
    def native_parameters(self) -> Iterator[nn.Parameter]:
        """PDE + GPM (the native-resolution branch): lr_native in Stage 2."""
        return self.native.parameters()

    def scorer_parameters(self) -> Iterator[nn.Parameter]:
        """Scoring MLP: trained in Stage 1, frozen in Stage 2."""
        return self.scorer.parameters()

    def main_parameters(self) -> Iterator[nn.Parameter]:
        """Backbone + pixel decoder + transformer decoder + injection (phi, W_q/k/v, gamma): lr_main."""
        yield from self.detector.parameters()
        yield from self.injection.parameters()

    def freeze_scorer(self, frozen: bool = True) -> None:
        """Stage 2: no gradient for the scorer, kept in eval mode even under model.train()."""
        self._scorer_frozen = frozen
        for p in self.scorer.parameters():
            p.requires_grad_(not frozen)
        self.scorer.train(self.training and not frozen)

    def train(self, mode: bool = True) -> NaIRSTD:
        super().train(mode)
        if self._scorer_frozen:
            self.scorer.eval()
        return self

    # -- forward passes --------------------------------------------------------------------
    def _pad(self, x: Tensor) -> Tensor:
        xp = pad_to_multiple(x, self.pad_multiple, self.config.pad_mode)
        return to_memory_format(xp, self.config.channels_last)

    def _score(
        self, xp: Tensor, lazy: bool = False
    ) -> tuple[list[Tensor] | list[NativeStage], Tensor, tuple[int, int]]:
        """Native branch + scorer. lazy (eval, patch branch only): the branch's `NativeStage`s
        instead of dense F_l^na, so only the K selected patches get the GPM add-back."""
        if lazy and not self.training and isinstance(self.native, PatchNativeBranch):
            feats_na, tokens, grid = self.native.forward_stages(xp)
        else:
            feats_na, tokens, grid = self.native(xp)
        return feats_na, self.scorer(tokens), grid

    def score_patches(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Stage 1: native branch + scorer only (no detector) -> (patch_logits, patch_scores) (B, N)."""
        _, logits, _ = self._score(self._pad(x), lazy=True)
        return logits, logits.sigmoid()

    def forward(self, x: Tensor, return_extras: bool = False) -> Tensor | dict[str, Any]:
        H, W = x.shape[-2:]
        xp = self._pad(x)
        feats_na, patch_logits, grid = self._score(xp, lazy=not return_extras)
        scores = patch_logits.sigmoid()
        # Hard Top-K on detached scores: the segmentation loss never reaches the scorer this way.
        selected = select_top_k(scores.detach(), k_for(scores.shape[1], self.top_k))
        feats_bb, skip = self.detector.encode(xp)
        fused = self.injection(feats_bb, feats_na, selected, grid)
        logits = self.detector.decode(fused, skip, xp)[..., :H, :W]
        if not return_extras:
            return logits
        return {
            "logits": logits,
            "patch_logits": patch_logits,
            "patch_scores": scores,
            "selected": selected,
            "patch_grid": grid,
            "features_detector": feats_bb,
            "features_fused": fused,
            "features_native": feats_na,
        }


@register_model("na_irstd")
def na_irstd(size: str = "tiny", **overrides: Any) -> NaIRSTD:
    """The paper's model: patch-based 2D+1D native branch (PDE + GPM), Top-K injection."""
    overrides.setdefault("native", "patch")
    return NaIRSTD(make_config(NaIRSTDConfig, size, **overrides))


@register_model("dense_cnn")
def dense_cnn(size: str = "tiny", **overrides: Any) -> NaIRSTD:
    """Table IV "Non-Patch-based CNN": the PDE convs run densely on the image, no GPM."""
    overrides.setdefault("native", "dense")
    return NaIRSTD(make_config(NaIRSTDConfig, size, **overrides))
