"""Na-IRSTD models: the detector, the native-resolution branch and the full model (SPEC §2).

    from nairstd.zoo import build_model, list_models
    model = build_model("na_irstd", size="tiny", top_k=5)
    logits = model(x)                        # (B, 1, H, W)
    extras = model(x, return_extras=True)    # logits, patch scores, selected indices, features

Variants: detector, detector_ds2, dense_cnn, na_irstd. Baselines register into the same registry;
`nairstd.zoo` (above this package and `nairstd.baselines`) builds any of them by name.
"""

from .config import SIZES, DetectorConfig, NaIRSTDConfig, make_config
from .detector import Detector
from .na_irstd import NaIRSTD
from .registry import register_model
from .scoring import (
    hard_patch_labels,
    k_for,
    score_loss,
    select_top_k,
    soft_patch_labels,
)

__all__ = [
    "SIZES",
    "Detector",
    "DetectorConfig",
    "NaIRSTD",
    "NaIRSTDConfig",
    "hard_patch_labels",
    "k_for",
    "make_config",
    "register_model",
    "score_loss",
    "select_top_k",
    "soft_patch_labels",
]
