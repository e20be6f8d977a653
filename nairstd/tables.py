"""Writing tables (CSV + Markdown) and setting them beside the paper's reported numbers."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pandas as pd

from nairstd.io import write_text


def reported(name: str) -> pd.DataFrame:
    """A table of the paper as reported (shipped copy of paper/reported/<name>.csv)."""
    entry = resources.files("nairstd") / "reported" / f"{name}.csv"
    if not entry.is_file():
        raise FileNotFoundError(f"no reported table {name!r} shipped in nairstd/reported/")
    with entry.open() as handle:
        return pd.read_csv(handle)


def canonical(name: str) -> str:
    """Dataset names compared loosely: 'IRSTD1k', 'irstd-1k' and 'IRSTD-1K' are one dataset."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def to_markdown(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """Markdown table; NaN cells (not computed) print as 'n/c'."""
    cells = df.astype(object).where(df.notna(), None)
    return cells.to_markdown(index=False, floatfmt=floatfmt, missingval="n/c")


def write_table(
    df: pd.DataFrame,
    out_dir: str | os.PathLike,
    name: str,
    title: str,
    notes: list[str] | None = None,
    floatfmt: str = ".2f",
) -> tuple[Path, Path]:
    """Write out_dir/name.csv and out_dir/name.md (title, notes, table), each atomically.

    Cells that were not computed must be NaN: they print as 'n/c' (not computed) in Markdown
    and stay empty in the CSV, never as a made-up number.
    """
    out_dir = Path(out_dir)
    csv_path = write_text(out_dir / f"{name}.csv", df.to_csv(index=False))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {title}", "", *[f"- {n}" for n in notes or []], f"- written {stamp}", ""]
    md_path = write_text(
        out_dir / f"{name}.md", "\n".join(lines) + "\n" + to_markdown(df, floatfmt) + "\n"
    )
    return csv_path, md_path
