"""Name -> builder registry shared by Na-IRSTD variants and the baselines.

A builder is `fn(size: str = "tiny", **overrides) -> nn.Module`. Register one with

    @register_model("my_net")
    def my_net(size="tiny", **overrides): ...

This module imports no model (the timm way): a model module imports it to register itself, and
`nairstd.zoo` imports every model module and offers `build_model` / `list_models`.
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


def create_model(name: str, size: str = "tiny", **overrides: Any) -> nn.Module:
    """Build a model registered so far. Overrides map onto config fields; unknown ones raise TypeError."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {registered_models()}")
    return _REGISTRY[name](size=size, **overrides)


def registered_models() -> list[str]:
    """Names registered so far (the modules imported so far), sorted."""
    return sorted(_REGISTRY)
