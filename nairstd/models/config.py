"""Model configurations (SPEC §2) and the `tiny` / `base` size presets.

Configs are flat dataclasses (nanoGPT style) so that `build_model(name, size, **overrides)` can map
every keyword straight onto a field. `NaIRSTDConfig` extends `DetectorConfig`: the detector inside
Na-IRSTD is built from the very same fields, which is what makes "w/o native-resolution branch"
(the `detector` variant) exactly the Na-IRSTD detector with the branch removed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar


@dataclass
class DetectorConfig:
    """Query-based hierarchical detector (SPEC §2.1, a compact SimIR-like design)."""

    in_chans: int = 1  # grey infrared input
    widths: tuple[int, ...] = (16, 32, 64, 128)  # encoder channels C_l at strides 4, 8, 16, 32
    depths: tuple[int, ...] = (1, 1, 2, 1)  # residual blocks per encoder stage
    pixel_dim: int = 32  # pixel-decoder width = per-pixel (and per-query mask) embedding size
    # Stride of the per-pixel embeddings: 4, 2 or 1. Below 4 the pixel decoder adds a shallow
    # skip (the stem's stride-2 map; a full-res conv for 1) so 1-3 px targets survive decoding.
    output_stride: int = 2
    decoder_dim: int = 64  # transformer-decoder width
    num_queries: int = 4  # learnable queries Q
    decoder_layers: int = 2  # cross-attn + self-attn + FFN layers
    decoder_heads: int = 2  # attention heads in the transformer decoder
    ffn_ratio: int = 4  # FFN hidden = ffn_ratio * decoder_dim
    # How the Q query masks become one target map: "weighted" = softmax(confidence)-weighted sum
    # of the query mask logits (every query gets gradient); "max" = per-pixel max over queries.
    query_combine: str = "weighted"
    input_downsample: int = 1  # 2 = Table I "2x downsampling": bilinear /2 in, logits x2 out
    pad_mode: str = "zeros"  # padding to a multiple of the max stride: "zeros" or "reflect"
    # Run the convs in NHWC (channels_last): on CPU oneDNN's NCHW kernels for few-channel convs
    # (the native branch's 8-16 channels) are 5-15x slower. Outputs are the same up to float error.
    channels_last: bool = True


@dataclass
class NaIRSTDConfig(DetectorConfig):
    """Detector + native-resolution branch + scorer + cross-scale injection (SPEC §2.2-2.4)."""

    native: str = "patch"  # "patch" = PDE+GPM on P x P patches (ours); "dense" = Non-Patch CNN
    patch_size: int = 32  # P; N = HW / P^2 patches (64 at 256 x 256)
    native_widths: tuple[int, ...] = (
        8,
        16,
        32,
        64,
    )  # PDE channels d_l, one stage per detector stage
    native_depths: tuple[int, ...] = (1, 1, 1, 1)  # PDE blocks per stage (after stem / downsample)
    native_block: str = "dwsep"  # PDE block: "dwsep" (depthwise-separable, cheap) or "conv" (3x3)
    gpm_head_dim: int = 16  # GPM heads = max(1, d_l // gpm_head_dim)
    score_hidden: int = 64  # hidden width of the scoring MLP
    top_k: int | float = 5  # K patches injected (int), or a fraction of N (float in (0, 1])
    sigma: float = 8.0  # soft-label decay sigma in px (Eq. 10); read by the training package
    inject_heads: int = 1  # heads of the Eq. 13 cross-attention (1 = the equation as written)
    inject_norm: bool = True  # pre-LayerNorm on window and native tokens before Eq. 13 (ours)
    inject_pos: bool = True  # add in-patch sine positions to q/k so windows align to pixels (ours)
    gamma_init: float = 0.0  # gamma_l init; 0 => an untrained branch leaves the detector unchanged


# Size presets. `tiny` is sized for the 2-core CPU (SPEC §8); `base` follows SPEC §2.1 widths.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        widths=(16, 32, 64, 128),
        depths=(1, 1, 2, 1),
        pixel_dim=32,
        output_stride=2,
        decoder_dim=64,
        decoder_layers=2,
        decoder_heads=2,
        native_widths=(8, 16, 32, 64),
        native_depths=(1, 1, 1, 1),
        score_hidden=64,
    ),
    "base": dict(
        widths=(32, 64, 128, 256),
        depths=(2, 2, 2, 2),
        pixel_dim=64,
        output_stride=2,
        decoder_dim=128,
        decoder_layers=3,
        decoder_heads=4,
        native_widths=(16, 32, 64, 128),
        native_depths=(1, 1, 2, 1),
        score_hidden=128,
    ),
}

C = TypeVar("C", DetectorConfig, NaIRSTDConfig)


def make_config(cls: type[C], size: str = "tiny", **overrides: Any) -> C:
    """Build `cls` from a size preset plus keyword overrides.

    Preset keys the class does not have are skipped (the detector ignores native-branch presets);
    an override the class does not have raises TypeError naming it.
    """
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; choose from {sorted(SIZES)}")
    names = {f.name for f in dataclasses.fields(cls)}
    for key in overrides:
        if key not in names:
            raise TypeError(f"{cls.__name__} has no field {key!r} (unknown model override)")
    values = {k: v for k, v in SIZES[size].items() if k in names}
    values.update(overrides)
    # Lists from JSON / CLI become tuples so configs stay hashable and compare equal.
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**values)
