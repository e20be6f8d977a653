"""torch.compile for inference (`--compile auto|on|off` of predict, eval and bench).

Compiling costs tens of seconds per distinct input shape on a CPU (measured 40-80 s for the tiny
models on one thread) and saves a few ms per image, so `auto` compiles only when the run is long
enough to pay that back: at least `AUTO_MIN_IMAGES` inputs on a CPU, `AUTO_MIN_IMAGES_CUDA` on a
GPU. Shapes: every distinct padded input size is its own static graph (`dynamic=False`; the
models' Top-K and padding specialise on the size anyway), and after `MAX_SHAPES` sizes the
compiled model falls back to eager for new sizes instead of recompiling without end.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily: the CLI reads COMPILE_HELP without it
    import torch
    from torch import nn

COMPILE_CHOICES = ("auto", "on", "off")
# CPU, one thread, quiet machine (`bench predict`, tiny na_irstd): 640x512 compiles in 37 s and
# saves 11 ms per frame (pays off after ~3300 frames); 1920x1080 in 144 s for 112 ms per frame
# (~1300 frames). Under load both sides grow about alike.
AUTO_MIN_IMAGES = 3000
AUTO_MIN_IMAGES_CUDA = 50
MAX_SHAPES = 8

COMPILE_HELP = (
    "torch.compile the model: on, off, or auto (default) = on when there are at least "
    f"{AUTO_MIN_IMAGES} inputs on CPU ({AUTO_MIN_IMAGES_CUDA} on CUDA), where the compile time "
    f"(tens of seconds per input size, at most {MAX_SHAPES} sizes compiled) pays off"
)


def should_compile(mode: str, n_inputs: int, device: torch.device | str = "cpu") -> bool:
    """The `--compile` rule: on / off as given; auto from the number of inputs and the device."""
    if mode not in COMPILE_CHOICES:
        raise ValueError(f"compile must be one of {COMPILE_CHOICES}, got {mode!r}")
    if mode != "auto":
        return mode == "on"
    import torch

    cuda = torch.device(device).type == "cuda"
    return n_inputs >= (AUTO_MIN_IMAGES_CUDA if cuda else AUTO_MIN_IMAGES)


def compile_model(model: nn.Module) -> nn.Module:
    """An inference-compiled view of `model` (shares its parameters; one graph per input size).

    NAIRSTD_COMPILE_BACKEND picks the torch.compile backend (default inductor; the tests use
    "eager", which traces the model with dynamo but generates no code, to stay fast).
    """
    import torch
    import torch._dynamo

    # Each new padded size is a recompile; bound them (then run eager for further sizes).
    torch._dynamo.config.recompile_limit = MAX_SHAPES
    backend = os.environ.get("NAIRSTD_COMPILE_BACKEND", "").strip() or "inductor"
    return torch.compile(model, dynamic=False, backend=backend)


def compile_counters() -> dict[str, int]:
    """Dynamo's frame counters (graphs compiled so far in this process), for reporting."""
    from torch._dynamo.utils import counters

    return {k: int(v) for k, v in counters["stats"].items()}
