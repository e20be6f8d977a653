"""Where things live: the project root, data roots and the outputs folder.

Data is looked up in the folders of `NAIRSTD_DATA` (os.pathsep-separated; e.g. point it at
`../shared/datasets`) and then in the project's own `data/`, where generated datasets are written.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def project_root() -> Path:
    """The checkout holding pyproject.toml (searched upward from the working directory), else cwd.

    Notebooks run with their own folder as cwd, so relative defaults must not depend on it.
    """
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and 'name = "nairstd"' in pyproject.read_text(errors="ignore"):
            return folder
    return here


def generated_data_root() -> Path:
    """The folder generated datasets (synthetic, IRSTD-Hard) are written to."""
    env = os.environ.get("NAIRSTD_GENERATED")
    return Path(env).resolve() if env else project_root() / "data"


def data_roots(data_root: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for datasets, in order: explicit `data_root`, `$NAIRSTD_DATA`, `data/`."""
    roots: list[Path] = []
    if data_root:
        roots += [Path(p) for p in str(data_root).split(os.pathsep) if p]
    env = os.environ.get("NAIRSTD_DATA", "")
    roots += [Path(p) for p in env.split(os.pathsep) if p]
    roots.append(generated_data_root())
    unique: list[Path] = []
    for root in roots:
        root = root.expanduser().resolve()
        if root not in unique:
            unique.append(root)
    return unique


def outputs_root() -> Path:
    env = os.environ.get("NAIRSTD_OUTPUTS")
    return Path(env).resolve() if env else project_root() / "outputs"


def git_commit() -> str:
    """`git describe --always --dirty` of the checkout ('unknown' outside one)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(project_root()), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
