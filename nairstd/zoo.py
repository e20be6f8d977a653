"""Every model and comparison method by name: the one module that imports them all.

    from nairstd.zoo import build_model, list_models
    model = build_model("na_irstd", size="tiny", top_k=5)

Deep models (the Na-IRSTD variants and the deep baselines) register into `models.registry` when
their module is imported; this module imports them, so the registry itself imports no model.
The training-free methods of Table III are plain functions, reached by `classical_method(name)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

import nairstd.baselines  # noqa: F401  (registers acm, dnanet, isnet, uiunet, agpcnet, rpcanet)
import nairstd.models.detector  # noqa: F401  (registers detector, detector_ds2)
import nairstd.models.na_irstd  # noqa: F401  (registers na_irstd, dense_cnn)
from nairstd.baselines import CLASSICAL
from nairstd.models.registry import create_model, registered_models


def build_model(name: str, size: str = "tiny", **overrides: Any) -> nn.Module:
    """Build a registered model. Overrides map onto config fields; unknown ones raise TypeError."""
    return create_model(name, size, **overrides)


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return registered_models()


def classical_method(name: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """The training-free method registered under `name` (nairstd.baselines.CLASSICAL), or None."""
    return CLASSICAL.get(name)
