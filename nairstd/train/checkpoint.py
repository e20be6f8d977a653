"""Model checkpoints that rebuild themselves: the model's registry name, size and overrides travel
with the weights, so `load_model(path)` needs nothing else.

A checkpoint is a dict {"format", "model", "size", "overrides", "state_dict", "run_id", "config",
"epoch", "metrics"}; `path` may also be a run folder (its best.pt is used).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nairstd.data.images import DataError
from nairstd.models.traits import unwrap

FORMAT = "nairstd-checkpoint-1"


def model_checkpoint(
    model: nn.Module,
    name: str,
    size: str,
    overrides: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """A self-describing checkpoint dict of `model` (weights on the CPU)."""
    state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    return {
        "format": FORMAT,
        "model": name,
        "size": size,
        "overrides": _jsonable(overrides),
        "state_dict": state,
        **extra,
    }


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file from a file or a run folder (best.pt, else last.pt)."""
    path = Path(path).expanduser()
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise DataError(f"{path}: no best.pt or last.pt in this run folder")
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    return path


def load_trusted(file: str | os.PathLike, map_location: str = "cpu") -> Any:
    """torch.load of an untrusted file: tensors and plain containers only (weights_only), so a
    file whose unpickling would run code is refused before any of it runs. Errors name the file."""
    file = Path(file)
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise DataError(
            f"{file}: not a nairstd checkpoint (it holds Python objects other than weights; "
            "refused without running them)"
        ) from err
    except Exception as err:  # a truncated, empty or foreign file
        raise DataError(f"{file}: cannot read checkpoint ({type(err).__name__}: {err})") from err


def read_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict (a run folder gives its best.pt); errors name the file."""
    file = resolve_checkpoint(path)
    ckpt = load_trusted(file, map_location)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model" not in ckpt:
        raise DataError(f"{file}: not a nairstd checkpoint (no model name / state_dict)")
    ckpt["path"] = str(file)
    return ckpt


def build_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights."""
    from nairstd.zoo import build_model

    where = ckpt.get("path", "checkpoint")
    try:
        model = build_model(ckpt["model"], ckpt.get("size", "tiny"), **ckpt.get("overrides", {}))
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{where}: cannot rebuild its model ({err})") from err
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:  # another variant or size: name the first mismatch only
        first = str(err).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise DataError(
            f"{where}: weights do not fit model {ckpt['model']!r} size {ckpt.get('size')!r} "
            f"({detail})"
        ) from err
    return model


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode on `device`, checkpoint dict) from a checkpoint file or run folder."""
    ckpt = read_checkpoint(path)
    model = build_from_checkpoint(ckpt).to(device).eval()
    return model, ckpt


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """A torch device from "auto", "cpu", "cuda", "cuda:1", ...; a bad name is a ValueError."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"--device {device!r}: not a device (auto, cpu, cuda, cuda:N)") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device!r}: CUDA is not available on this machine")
    return resolved
