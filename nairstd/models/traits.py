"""What a built model is: the bare module inside a wrapper, its native branch, its pad multiple."""

from __future__ import annotations

from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel / adapter wrapper."""
    while hasattr(model, "module"):
        model = model.module
    return model


def has_native_branch(model: nn.Module) -> bool:
    """True for models with a scorer / Top-K selection (na_irstd, dense_cnn)."""
    return hasattr(unwrap(model), "score_patches")


def pad_multiple(model: nn.Module) -> int:
    """The multiple the model pads its input to (the patch lattice is laid on the padded image)."""
    m = unwrap(model)
    return int(getattr(m, "pad_multiple", getattr(m, "patch_size", 1)))
