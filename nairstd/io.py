"""Crash-safe file writing and image I/O shared by the package.

Every output is written to a temporary file in the destination folder and renamed into place,
so a crash mid-write never leaves a truncated checkpoint, table or image behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp"
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes files 0600; give the result the usual permissions (0666 minus umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Atomically write `path` with a callback that writes to the given temporary path."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    import torch

    return write_with(path, lambda tmp: torch.save(obj, tmp))


def save_png(array: np.ndarray, path: str | os.PathLike, compress_level: int | None = None) -> Path:
    """Save a uint8 (H, W) or (H, W, 3) array, or a bool mask (as 0/255), as PNG.

    compress_level: zlib level 0-9 (None: PIL's default); the pixels are the same at any level."""
    from PIL import Image

    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8 and array.dtype != np.uint16:
        raise TypeError(f"save_png expects uint8/uint16/bool, got {array.dtype} for {path}")
    options = {} if compress_level is None else {"compress_level": compress_level}
    return write_with(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG", **options))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
