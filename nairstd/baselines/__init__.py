"""Comparison methods of Table III (SPEC §7): classical detectors and deep baselines.

Importing this package registers every deep baseline in the shared model registry
(`nairstd.zoo` imports it), so

    from nairstd.zoo import build_model
    model = build_model("dnanet", size="tiny")
    logits = model(x)                          # (B, 1, H, W), any H, W
    out = model(x, return_aux=True)            # dict: "logits" + the method's extra outputs
    loss = model.loss(out, mask)               # the loss the method's paper prescribes

and the classical methods are plain functions ``CLASSICAL[name](image) -> (H, W) map in [0, 1)``.

`BASELINE_INFO[name]` describes every Table III method: ``table_name`` (its row name in
``paper/reported/table3_main.csv``), ``venue``, ``kind`` ("traditional" / "deep"), ``available``
(False: reported in the paper only, never built), ``reported`` (the paper's Table III has numbers
for it; Top-Hat and MPCM are our extra simple filters), ``paper_size_params`` (parameter count at the
paper's size, as reported in the literature; our `base` build matches it within a few percent),
``reduced`` (True when our `tiny` size - the one CPU runs use - is smaller than the paper's, so
tables label it "reduced"), ``loss`` (what `model.loss` implements) and a ``note``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from nairstd.losses import soft_iou_loss
from nairstd.models.registry import create_model

from . import acm, agpcnet, dnanet, isnet, rpcanet, uiunet  # noqa: F401  (registration)
from .classical import CLASSICAL, run_classical
from .common import count_params

DEEP_BASELINES: tuple[str, ...] = ("acm", "dnanet", "isnet", "uiunet", "agpcnet", "rpcanet")
UNAVAILABLE_BASELINES: tuple[str, ...] = ("irmamba", "saist")

BASELINE_INFO: dict[str, dict[str, Any]] = {
    # Traditional (training-free).
    "tophat": dict(
        table_name="Top-Hat",
        venue="-",
        kind="traditional",
        available=True,
        reported=False,
        paper_size_params=0,
        reduced=False,
        loss=None,
        note="white top-hat, disk radius 5; map 0.5 = mean + 4 std of the response",
    ),
    "mpcm": dict(
        table_name="MPCM",
        venue="PR'16",
        kind="traditional",
        available=True,
        reported=False,
        paper_size_params=0,
        reduced=False,
        loss=None,
        note="multiscale patch contrast, scales 3/5/7/9, bright targets; 0.5 = mean + 4 std",
    ),
    "nram": dict(
        table_name="NRAM",
        venue="RS'18",
        kind="traditional",
        available=True,
        reported=True,
        paper_size_params=0,
        reduced=False,
        loss=None,
        note="patch image 50/10, gamma-norm + weighted l1 + l2,1, ADMM/DC (max 100 iterations, "
        "the authors' code allows 1000); 0.5 = mean + 3 std of the target image",
    ),
    "pstnn": dict(
        table_name="PSTNN",
        venue="RS'19",
        kind="traditional",
        available=True,
        reported=True,
        paper_size_params=0,
        reduced=False,
        loss=None,
        note="patch tensor 40/40, structure-tensor prior, PSTNN t-SVD ADMM; "
        "0.5 = mean + 3 std of the target image",
    ),
    # Deep, trained here.
    "acm": dict(
        table_name="ACM",
        venue="WACV'21",
        kind="deep",
        available=True,
        reported=True,
        paper_size_params=520_000,
        reduced=False,
        loss="SoftIoU",
        note="ACM-U-Net, channels 8/16/32/64, 4 blocks/stage; tiny == base (already CPU-sized)",
    ),
    "dnanet": dict(
        table_name="DNANet",
        venue="TIP'22",
        kind="deep",
        available=True,
        reported=True,
        paper_size_params=4_700_000,
        reduced=True,
        loss="SoftIoU averaged over the main and 3 deep-supervision outputs",
        note="tiny: widths 6..96 (paper 16..256), 1 block per node (paper 2)",
    ),
    "isnet": dict(
        table_name="ISNet",
        venue="CVPR'22",
        kind="deep",
        available=True,
        reported=True,
        paper_size_params=970_000,
        reduced=True,
        loss="SoftIoU + (BCE + Dice) on the edge map vs the mask boundary",
        note="TOAA with plain (not deformable) 1xk / kx1 convs; Sobel gradient computed inside; "
        "tiny: 8-channel edge branch (paper 64)",
    ),
    "uiunet": dict(
        table_name="UIUNet",
        venue="TIP'23",
        kind="deep",
        available=True,
        reported=True,
        paper_size_params=50_540_000,
        reduced=True,
        loss="BCE summed over the fused and the 6 side outputs",
        note="RSU-7..4F stages, IC-A fusion, fused side outputs; tiny: 1/8 - 1/16 widths",
    ),
    "agpcnet": dict(
        table_name="AGPCNet",
        venue="TAES'23",
        kind="deep",
        available=True,
        reported=True,
        paper_size_params=12_360_000,
        reduced=True,
        loss="SoftIoU",
        note="ResNet-18 (no stem stride), CPM scales (10, 6), AFM decoder; "
        "tiny: widths 16..128, 1 block per stage",
    ),
    "rpcanet": dict(
        table_name="RPCANet",
        venue="WACV'24",
        kind="deep",
        available=True,
        reported=True,
        paper_size_params=680_000,
        reduced=True,
        loss="SoftIoU(T_K) + 0.01 MSE(D_K, input)",
        note="K = 6 unfolded stages; tiny: 8 channels, 2/3/2 hidden layers (paper 32, 3/6/3)",
    ),
    # Deep, reported only.
    "irmamba": dict(
        table_name="IRMamba",
        venue="AAAI'25",
        kind="deep",
        available=False,
        reported=True,
        paper_size_params=None,
        reduced=False,
        loss=None,
        note="reported in the paper only (needs the Mamba selective-scan CUDA kernels)",
    ),
    "saist": dict(
        table_name="SAIST",
        venue="CVPR'25",
        kind="deep",
        available=False,
        reported=True,
        paper_size_params=None,
        reduced=False,
        loss=None,
        note="reported in the paper only (needs a pretrained CLIP model)",
    ),
}


def build_baseline(name: str, size: str = "tiny", **overrides: Any) -> nn.Module:
    """Build deep baseline `name`; a clear error for the reported-only ones (IRMamba, SAIST)."""
    info = BASELINE_INFO.get(name)
    if info is not None and not info["available"]:
        raise NotImplementedError(f"{info['table_name']}: {info['note']}")
    if name not in DEEP_BASELINES:
        raise KeyError(f"{name!r} is not a deep baseline; choose from {list(DEEP_BASELINES)}")
    return create_model(name, size, **overrides)


__all__ = [
    "BASELINE_INFO",
    "CLASSICAL",
    "DEEP_BASELINES",
    "UNAVAILABLE_BASELINES",
    "build_baseline",
    "count_params",
    "run_classical",
    "soft_iou_loss",
]
