"""Import a peer's published weights into a nairstd checkpoint.

    python -m nairstd import-weights rpcanet ../shared/weights/rpcanet-sirst/RPCANet.pkl \\
        --out outputs/weights/rpcanet-sirst.pt

The file is read with ``torch.load(weights_only=True)`` (untrusted input), every tensor is renamed
onto our registered build by the method's mapping (``MAPPINGS``), shapes are checked, and the model
is loaded strictly. The checkpoint records where the weights came from (file, SHA-256, source,
licence and its text) and the input preprocessing the weights expect, which `eval` and `predict`
honour. To add a method: a `WeightsMapping` with its renaming rules and preprocessing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nairstd.data.images import DataError
from nairstd.io import InputFiles, save_torch, sha256_file
from nairstd.paths import project_root

# The peers' usual input: a grey image read as uint8, resized with OpenCV INTER_LINEAR, /255.
PEER_UNIT_256: dict[str, Any] = {
    "normalize": "unit",
    "resize": "bilinear-opencv",
    "input_size": 256,
    "description": "grey image /255 (no mean/std), resized to 256x256 with OpenCV INTER_LINEAR",
}


@dataclass(frozen=True)
class WeightsMapping:
    """How one peer's state dict maps onto one of our registered builds."""

    model: str  # our registry name
    size: str  # our size preset the weights fit
    rules: tuple[tuple[str, str], ...]  # (regex on their key, replacement): first match wins
    preprocessing: dict[str, Any]
    source: str = ""  # default provenance, overridable on the command line
    licence: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)

    def target(self, key: str) -> str | None:
        """Our parameter name for their `key` (None: no rule applies)."""
        for pattern, replacement in self.rules:
            if re.fullmatch(pattern, key):
                return re.sub(pattern, replacement, key)
        return None


MAPPINGS: dict[str, WeightsMapping] = {
    # Official RPCANet (models/deepunfolding.py, RPCANet9: stage_num=6, slayers=6, llayers=3,
    # mlayers=3, channel=32). Each decomposition module is one of our stages, with the same
    # nn.Sequential layout, so the layer indices carry over unchanged.
    "rpcanet": WeightsMapping(
        model="rpcanet",
        size="base",
        rules=(
            (r"decos\.(\d+)\.lowrank\.convs\.(.+)", r"stages.\1.bem.\2"),
            (r"decos\.(\d+)\.sparse\.convs\.(.+)", r"stages.\1.tem.\2"),
            (r"decos\.(\d+)\.merge\.mapping\.(.+)", r"stages.\1.irm.\2"),
            (r"decos\.(\d+)\.sparse\.epsilon", r"stages.\1.eps"),
        ),
        preprocessing=PEER_UNIT_256,
        source="github.com/fengyiwu98/RPCANet (models/deepunfolding.py RPCANet9; result/ISTD/*/RPCANet.pkl)",
        licence="MIT",
    ),
}


def weights_root() -> Path:
    """Where published weights are looked for: `$NAIRSTD_WEIGHTS`, else ../shared/weights."""
    env = os.environ.get("NAIRSTD_WEIGHTS")
    return Path(env).resolve() if env else (project_root().parent / "shared" / "weights").resolve()


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """A plain state dict from a weights file, loaded safely (errors name the file)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: weights file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickled code, a truncated or foreign file
        raise DataError(f"{path}: cannot read weights safely ({err})") from err
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # a training checkpoint wrapping the weights
    if not isinstance(obj, dict) or not obj:
        raise DataError(f"{path}: not a state dict (found {type(obj).__name__})")
    state: dict[str, Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, Tensor):
            raise DataError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        # nn.DataParallel saves "module."-prefixed names.
        state[key.removeprefix("module.")] = value
    return state


def map_state_dict(
    state: dict[str, Tensor], mapping: WeightsMapping, path: str | os.PathLike
) -> dict[str, Tensor]:
    """Their tensors renamed to ours; the first tensor that does not fit raises a DataError."""
    from nairstd.zoo import build_model

    ours = build_model(mapping.model, mapping.size, **mapping.overrides).state_dict()
    build = f"{mapping.model} {mapping.size}"
    mapped: dict[str, Tensor] = {}
    for key, value in state.items():
        target = mapping.target(key)
        if target is None:
            raise DataError(f"{path}: tensor {key!r} maps to no parameter of {build}")
        if target not in ours:
            raise DataError(f"{path}: tensor {key!r} -> {target!r}, which {build} does not have")
        if target in mapped:
            raise DataError(f"{path}: tensor {key!r} -> {target!r}, already filled by another")
        if tuple(value.shape) != tuple(ours[target].shape):
            raise DataError(
                f"{path}: tensor {key!r} has shape {tuple(value.shape)}, but {build} "
                f"{target!r} needs {tuple(ours[target].shape)}"
            )
        mapped[target] = value.detach().clone()
    missing = [k for k in ours if k not in mapped]
    if missing:
        raise DataError(
            f"{path}: no tensor for {build} {missing[0]!r} ({len(missing)} missing in all)"
        )
    return mapped


def sha256(path: Path) -> str:
    return sha256_file(path)


def import_weights(
    method: str,
    path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    source: str | None = None,
    licence: str | None = None,
) -> dict[str, Any]:
    """Convert `path` (a `method` state dict) into a nairstd checkpoint dict; write it to `out`."""
    from nairstd.train.checkpoint import model_checkpoint
    from nairstd.zoo import build_model

    if method not in MAPPINGS:
        raise DataError(f"{method}: no weights mapping (known: {', '.join(sorted(MAPPINGS))})")
    mapping = MAPPINGS[method]
    path = Path(path).expanduser()
    licence_file = path.parent / "LICENSE"
    if out is not None:  # before anything is read: --out W.pkl once destroyed the weights
        InputFiles([path, licence_file]).refuse(Path(out).expanduser())
    mapped = map_state_dict(read_state_dict(path), mapping, path)
    model = build_model(mapping.model, mapping.size, **mapping.overrides)
    model.load_state_dict(mapped, strict=True)
    provenance = {
        "file": path.name,
        "sha256": sha256(path),
        "bytes": path.stat().st_size,
        "source": source or mapping.source,
        "licence": licence or mapping.licence,
        # MIT and similar licences ask that the notice travel with copies of the weights.
        "licence_text": licence_file.read_text(errors="replace") if licence_file.is_file() else "",
        "tensors": len(mapped),
    }
    ckpt = model_checkpoint(
        model,
        mapping.model,
        mapping.size,
        mapping.overrides,
        run_id=f"imported-{method}-{provenance['sha256'][:12]}",
        preprocessing=dict(mapping.preprocessing),
        imported=provenance,
    )
    if out is not None:
        save_torch(ckpt, Path(out).expanduser())
    return ckpt
