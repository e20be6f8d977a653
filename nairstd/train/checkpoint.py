"""Model checkpoints that rebuild themselves: the model's registry name, size and overrides travel
with the weights, so `load_model(path)` needs nothing else.

A checkpoint is a dict {"format", "model", "size", "overrides", "state_dict", "run_id", "config",
"epoch", "metrics"}; `path` may also be a run folder (its best.pt is used). A run's last.pt adds
the resume state (optimiser, scheduler, scaler, loop state, RNG states; `save_run_checkpoint`,
`read_resume_state`).
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nairstd.data.images import DataError
from nairstd.io import save_torch
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


# --------------------------------------------------------------------------------------------------
# A training run's checkpoints: best.pt and the resume state last.pt
# --------------------------------------------------------------------------------------------------
def save_run_checkpoint(
    path: Path, model: nn.Module, config: Any, run_id: str, epoch: int, **extra: Any
) -> None:
    """Write a run's checkpoint atomically (`config` is the run's TrainConfig, not imported here:
    it sits a layer above): best.pt (`metrics=`) or last.pt (the resume state:
    optimizer, scheduler, scaler, state, rng, world_size)."""
    ckpt = model_checkpoint(
        model,
        config.model,
        config.size,
        config.build_overrides(),
        run_id=run_id,
        config=config.to_dict(),
        epoch=epoch,
        **extra,
    )
    save_torch(ckpt, path)


def read_resume_state(path: Path, world_size: int) -> dict[str, Any] | None:
    """A run's last.pt (None when there is none), checked to be a resume state written with
    `world_size` processes; errors name the file and say how to restart."""
    if not path.is_file():
        return None
    try:
        ckpt = load_trusted(path)
    except DataError as err:
        raise DataError(f"{err}; delete it to restart this run") from err
    if not isinstance(ckpt, dict) or "state" not in ckpt or "rng" not in ckpt:
        raise DataError(f"{path}: not a resume state; delete it to restart this run")
    if ckpt.get("world_size", 1) != world_size:
        raise RuntimeError(
            f"{path}: the run was started with {ckpt.get('world_size', 1)} process(es); "
            f"resume it with the same number (now {world_size})"
        )
    return ckpt


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every RNG state a run consumes (torch, numpy, python, cuda), for last.pt."""
    # Plain tensors/lists only, so last.pt loads with weights_only=True.
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, mt, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": [version, list(mt), gauss_next],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(
        (kind, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, gauss)
    )
    version, mt, gauss_next = state["python"]
    random.setstate((version, tuple(mt), gauss_next))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
