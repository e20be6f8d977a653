"""Name -> builder registry shared by Na-IRSTD variants and the baselines.

A builder is `fn(size: str = "tiny", **overrides) -> nn.Module`. Register one with

    @register_model("my_net")
    def my_net(size="tiny", **overrides): ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

Builder = Callable[..., nn.Module]
_REGISTRY: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering `fn(size="tiny", **overrides) -> nn.Module` under `name`."""

    def deco(fn: Builder) -> Builder:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def _load_builtin_models() -> None:
    """Import the modules that register models (the Na-IRSTD variants and the baselines).

    Lazy, so `import nairstd.models` stays light and the baselines can import this registry.
    """
    import nairstd.baselines  # noqa: F401
    import nairstd.models.na_irstd  # noqa: F401


def build_model(name: str, size: str = "tiny", **overrides: Any) -> nn.Module:
    """Build a registered model. Overrides map onto config fields; unknown ones raise TypeError."""
    if name not in _REGISTRY:
        _load_builtin_models()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {list_models()}")
    return _REGISTRY[name](size=size, **overrides)


def list_models() -> list[str]:
    """Registered model names, sorted."""
    _load_builtin_models()
    return sorted(_REGISTRY)
