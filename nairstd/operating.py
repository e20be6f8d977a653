"""A checkpoint's operating point: the protocol it was trained for and its detection threshold.

Training records its protocol in every checkpoint (`config.protocol`; the shipped models also a
top-level `protocol` and `threshold`, chosen on validation: nairstd.shipped). `predict` runs a
checkpoint under that protocol unless `--protocol` says otherwise, and binarises at its threshold
unless `--threshold` does; a checkpoint recording neither gets native and 0.5. A checkpoint
written by `calibrate` (nairstd.calibrate) carries a threshold set on the user's own target-free
frames, with the evidence under `calibration`; `predict` says so in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nairstd.data.images import DataError
from nairstd.protocols import NATIVE, PROTOCOLS

DEFAULT_PROTOCOL = NATIVE
DEFAULT_THRESHOLD = 0.5


PRETRAINED = Path(__file__).resolve().parent / "pretrained"  # the shipped models (nairstd.shipped)
DEFAULT_MODEL = "na_irstd"


def shipped_path(name: str = DEFAULT_MODEL) -> Path:
    """The weights file of shipped model `name`."""
    return PRETRAINED / f"{name}.pt"


def default_checkpoint() -> Path:
    """The shipped na_irstd (what `predict` uses without --checkpoint)."""
    path = shipped_path(DEFAULT_MODEL)
    if not path.is_file():
        raise DataError(
            f"{path}: the shipped model is missing (regenerate it: python -m nairstd.shipped); "
            "or pass --checkpoint"
        )
    return path


def recorded_protocol(ckpt: dict[str, Any] | None) -> str | None:
    """The protocol a checkpoint was trained for (None when it does not say)."""
    if not ckpt:
        return None
    protocol = ckpt.get("protocol") or (ckpt.get("config") or {}).get("protocol")
    return protocol if protocol in PROTOCOLS else None


def operating_point(
    ckpt: dict[str, Any] | None, protocol: str | None = None, threshold: float | None = None
) -> tuple[str, float]:
    """(protocol, threshold): the given values, else the checkpoint's, else native / 0.5."""
    protocol = protocol or recorded_protocol(ckpt) or DEFAULT_PROTOCOL
    if threshold is None:
        threshold = float((ckpt or {}).get("threshold", DEFAULT_THRESHOLD))
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"--threshold must lie strictly between 0 and 1, got {threshold}")
    return protocol, threshold


def calibrated_tile(ckpt: dict[str, Any] | None) -> int | None:
    """The window side a calibrated checkpoint's threshold was set with (`calibrate --tile`),
    None when it is not calibrated (tiling changes the map near window seams)."""
    calibration = (ckpt or {}).get("calibration")
    tile = calibration.get("tile") if isinstance(calibration, dict) else None
    return int(tile) if isinstance(tile, int) and not isinstance(tile, bool) and tile >= 0 else None


def calibration_note(
    ckpt: dict[str, Any] | None, protocol: str | None = None, threshold: float | None = None
) -> str | None:
    """The line `predict` prints when its threshold comes from `calibrate`: the frames and the
    budget it was set with (None when the checkpoint is not calibrated or `threshold` is given).
    `protocol`: the one asked for (None: the checkpoint's); another than the calibration's is
    named, since a threshold set under one protocol does not carry over to the other."""
    calibration = (ckpt or {}).get("calibration")
    if not isinstance(calibration, dict) or threshold is not None:
        return None
    line = (
        f"threshold {ckpt['threshold']} from calibration on {calibration['frames']} target-free "
        f"frames (budget {calibration['max_false_per_frame']} false targets per frame, "
        f"{calibration['date']})"
    )
    finetune = calibration.get("finetune")
    if isinstance(finetune, dict):
        line += f", after a {finetune.get('steps')}-step fine-tune on them"
    calibrated = calibration.get("protocol")
    if protocol is not None and calibrated and protocol != calibrated:
        line += f"; it was calibrated under {calibrated}, not {protocol}"
    return line
