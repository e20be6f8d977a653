"""The query-based hierarchical detector ("w/o native-resolution branch", SPEC §2.1)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import DetectorConfig, make_config
from .encoder import Encoder
from .layers import pad_to_multiple, to_memory_format
from .pixel_decoder import PixelDecoder
from .registry import register_model
from .transformer_decoder import TransformerDecoder


class Detector(nn.Module):
    """Encoder -> FPN pixel decoder -> transformer decoder -> one logit map.

    mask logits = query mask embedding . per-pixel embeddings; the Q query masks are combined into
    one map (`query_combine`) at `output_stride`, then bilinearly upsampled to the input size.
    Inputs of any size are padded (bottom/right) to a multiple of the largest stride (times
    `input_downsample`) and the output is cropped back.
    """

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        if config.query_combine not in ("weighted", "max"):
            raise ValueError(
                f"query_combine must be 'weighted' or 'max', got {config.query_combine!r}"
            )
        if config.input_downsample not in (1, 2):
            raise ValueError(f"input_downsample must be 1 or 2, got {config.input_downsample}")
        self.encoder = Encoder(config.in_chans, config.widths, config.depths)
        self.pixel_decoder = PixelDecoder(
            config.widths,
            config.pixel_dim,
            config.output_stride,
            skip_chans=self.encoder.skip_chans,
            in_chans=config.in_chans,
        )
        self.transformer_decoder = TransformerDecoder(
            in_dim=config.pixel_dim,
            dim=config.decoder_dim,
            mask_dim=config.pixel_dim,
            num_queries=config.num_queries,
            num_layers=config.decoder_layers,
            heads=config.decoder_heads,
            num_levels=self.pixel_decoder.memory_levels,
            ffn_ratio=config.ffn_ratio,
        )
        if config.channels_last:
            # NHWC conv weights make oneDNN run NHWC even where a 1-channel input is ambiguous.
            self.to(memory_format=torch.channels_last)

    @property
    def strides(self) -> tuple[int, ...]:
        return self.encoder.strides

    @property
    def pad_multiple(self) -> int:
        return self.strides[-1] * self.config.input_downsample

    def encode(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """Padded image -> ([F_1^bb .. F_L^bb], stride-2 skip)."""
        return self.encoder(x)

    def decode(self, feats: list[Tensor], skip: Tensor, image: Tensor) -> Tensor:
        """(Possibly fused) stage features -> logits (B, 1, H, W) at the size of `image`."""
        pix, memory = self.pixel_decoder(feats, skip, image)
        emb, conf = self.transformer_decoder(memory)  # (B, Q, D), (B, Q)
        if self.config.query_combine == "weighted":
            # sum_q w_q (e_q . m) == (sum_q w_q e_q) . m: one dot product instead of Q maps.
            emb = (conf.softmax(dim=1).unsqueeze(-1) * emb).sum(1, keepdim=True)
            logits = torch.einsum("bqc,bchw->bqhw", emb, pix)
        else:
            logits = torch.einsum("bqc,bchw->bqhw", emb, pix).amax(1, keepdim=True)
        if logits.shape[-2:] != image.shape[-2:]:
            logits = F.interpolate(
                logits, size=image.shape[-2:], mode="bilinear", align_corners=False
            )
        return logits

    def forward(self, x: Tensor, return_extras: bool = False) -> Tensor | dict[str, Any]:
        H, W = x.shape[-2:]
        xp = pad_to_multiple(x, self.pad_multiple, self.config.pad_mode)
        xin = xp
        if self.config.input_downsample > 1:
            s = 1 / self.config.input_downsample
            xin = F.interpolate(xp, scale_factor=s, mode="bilinear", align_corners=False)
        xin = to_memory_format(xin, self.config.channels_last)
        feats, skip = self.encode(xin)
        logits = self.decode(feats, skip, xin)
        if logits.shape[-2:] != xp.shape[-2:]:
            logits = F.interpolate(logits, size=xp.shape[-2:], mode="bilinear", align_corners=False)
        logits = logits[..., :H, :W]
        if return_extras:
            return {"logits": logits, "features_detector": feats}
        return logits


@register_model("detector")
def detector(size: str = "tiny", **overrides: Any) -> Detector:
    """The hierarchical detector alone (= "w/o native-resolution branch")."""
    return Detector(make_config(DetectorConfig, size, **overrides))


@register_model("detector_ds2")
def detector_ds2(size: str = "tiny", **overrides: Any) -> Detector:
    """Table I setting: input bilinearly downsampled 2x before the detector, logits upsampled back."""
    overrides.setdefault("input_downsample", 2)
    return Detector(make_config(DetectorConfig, size, **overrides))
