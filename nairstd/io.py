"""Crash-safe file writing and image I/O shared by the package.

Every output is written to a temporary file in the destination folder and renamed into place,
so a crash mid-write never leaves a truncated checkpoint, table or image behind; a whole folder
(a generated dataset) is built the same way by `atomic_dir`.

Users' files are sacred: every command that writes checks its outputs against the files it reads
(`InputFiles`) before writing anything. The rename would replace an input of the same name, so
e.g. `import-weights W.pkl --out W.pkl` destroyed the published weights once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


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
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale_partials(final: Path) -> None:
    """Remove temporary folders left by killed writers of `final` (never a live writer's)."""
    for p in final.parent.glob(f".{final.name}.partial-*"):
        try:
            pid = int(p.name.split("-")[-2])
        except (ValueError, IndexError):
            continue
        if p.is_dir() and not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def _swap_into_place(tmp: Path, final: Path, keep: Callable[[Path], bool] | None) -> None:
    """Rename the finished temporary folder onto `final` (replacing an old or partial folder)."""
    if final.exists():
        if keep is not None and keep(final):
            return  # a concurrent writer finished the same content meanwhile: keep theirs
        old = final.parent / f".{final.name}.old-{os.getpid()}-{time.monotonic_ns()}"
        os.rename(final, old)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                os.rename(old, final)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.rename(tmp, final)
    except OSError:
        # A concurrent writer renamed its copy first; accept it if it holds the same content.
        if keep is None or not keep(final):
            raise


@contextmanager
def atomic_dir(
    path: str | os.PathLike, keep: Callable[[Path], bool] | None = None
) -> Iterator[Path]:
    """Yield an empty hidden folder beside `path`; swap it onto `path` only if the block succeeds.

    The folder is `.NAME.partial-PID-XXXX`: folders of writers that died (their PID is gone) are
    removed first, a live writer's are left alone. An existing `path` is replaced, unless
    `keep(path)` is true by the end (a concurrent writer finished the same content). An
    interrupted block never leaves a complete-looking `path`.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_partials(final)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.partial-{os.getpid()}-"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the result gets the usual mode
        yield tmp
        _swap_into_place(tmp, final, keep)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def generated_by(folder: Path, key: str, prefix: str = "") -> bool:
    """True when `folder/meta.json` is a JSON object whose `key` is present (and, with `prefix`, a
    string starting with it): the mark nairstd's writers leave on the folders they generate."""
    try:
        meta = json.loads((Path(folder) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    value = meta.get(key) if isinstance(meta, dict) else None
    return value is not None and (not prefix or str(value).startswith(prefix))


def refuse_foreign_folder(path: Path, ours: Callable[[Path], bool], option: str = "--out") -> None:
    """Raise ValueError when `path` exists and is neither an empty folder nor one `ours` says a
    nairstd writer made: `atomic_dir` replaces what is there, and a user's folder that happens
    to have the same name must never be deleted."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_dir() and not path.is_symlink() and (ours(path) or not any(path.iterdir())):
        return
    raise ValueError(
        f"{path}: exists and was not generated by nairstd (no meta.json of ours); refusing to "
        f"replace it, choose another {option}"
    )


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file (symlinks followed), None when there is none."""
    try:
        st = path.stat()
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def _resolved(path: Path) -> Path:
    try:
        return path.expanduser().resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare it as written
        return path.expanduser().absolute()


class InputFiles:
    """The files a command reads, indexed so that each planned output is checked against all of
    them in O(1): an output is an input when both resolve to the same path (symlinks in any
    component followed) or are the same existing file (same inode: a hard link).

    A symlink or hard link to an input would survive our atomic rename (the link is replaced,
    not its target), but it is another name of the user's file that we would silently take over,
    so it is refused too.
    """

    def __init__(self, paths: Iterable[str | os.PathLike] = ()) -> None:
        self._by_path: dict[Path, Path] = {}
        self._by_inode: dict[tuple[int, int], Path] = {}
        self.add(paths)

    def add(self, paths: Iterable[str | os.PathLike]) -> InputFiles:
        for item in paths:
            path = Path(item)
            self._by_path.setdefault(_resolved(path), path)
            identity = _identity(path)
            if identity is not None:
                self._by_inode.setdefault(identity, path)
        return self

    def __len__(self) -> int:
        return len(self._by_path)

    def clash(self, output: str | os.PathLike) -> Path | None:
        """The input that writing `output` would write over (None: no input)."""
        output = Path(output)
        found = self._by_path.get(_resolved(output))
        if found is None:
            identity = _identity(output)
            found = self._by_inode.get(identity) if identity is not None else None
        return found

    def refuse(self, *outputs: str | os.PathLike) -> None:
        """ValueError naming the output and the input when any output would write over one."""
        for output in outputs:
            found = self.clash(output)
            if found is not None:
                same = "" if Path(output) == found else " (the same file)"
                raise ValueError(
                    f"{output}: refusing to write over the input {found}{same}; "
                    "choose another output path"
                )


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
