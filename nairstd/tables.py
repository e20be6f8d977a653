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
    display: pd.DataFrame | None = None,
) -> tuple[Path, Path]:
    """Write out_dir/name.csv and out_dir/name.md (title, notes, table), each atomically.
    `display`: what the Markdown shows instead of `df` (e.g. "mean ± std" cells).

    Cells that were not computed must be NaN: they print as 'n/c' (not computed) in Markdown
    and stay empty in the CSV, never as a made-up number.
    """
    out_dir = Path(out_dir)
    csv_path = write_text(out_dir / f"{name}.csv", df.to_csv(index=False))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {title}", "", *[f"- {n}" for n in notes or []], f"- written {stamp}", ""]
    md_path = write_text(
        out_dir / f"{name}.md",
        "\n".join(lines) + "\n" + to_markdown(df if display is None else display, floatfmt) + "\n",
    )
    return csv_path, md_path


def over_seeds(rows: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Rows of one table cell per seed -> one row per cell: each metric's mean, `<m>_std`
    (sample std, n-1; NaN for one seed) and `n_seeds`. Columns outside keys/metrics keep the
    first seed's value."""
    if rows.empty:
        return rows
    out = []
    for _, group in rows.groupby(keys, sort=False, dropna=False):
        row = group.iloc[0].to_dict()
        for m in metrics:
            values = pd.to_numeric(group[m], errors="coerce")
            row[m] = values.mean()
            row[f"{m}_std"] = values.std(ddof=1) if values.notna().sum() > 1 else float("nan")
        row["n_seeds"] = len(group)
        row.pop("seed", None)  # one value per group no longer
        out.append(row)
    table = pd.DataFrame(out)
    table["n_seeds"] = table["n_seeds"].astype("Int64")
    return table


def mean_std_cells(table: pd.DataFrame, metrics: list[str], digits: int = 2) -> pd.DataFrame:
    """A display copy of `over_seeds` output: "mean ± std" in each metric cell (the mean alone
    for one seed or a reported row), the `_std` columns dropped."""
    shown = table.copy()
    for m in metrics:
        if m not in shown:
            continue
        std = shown.get(f"{m}_std")
        cells = []
        for i, value in enumerate(shown[m]):
            if value is None or pd.isna(value):
                cells.append(None)
            elif std is not None and not pd.isna(std.iloc[i]):
                cells.append(f"{value:.{digits}f} ± {std.iloc[i]:.{digits}f}")
            else:
                cells.append(f"{value:.{digits}f}")
        shown[m] = cells
    return shown.drop(columns=[c for c in shown.columns if c.endswith("_std")])


def markdown_ready(df: pd.DataFrame) -> pd.DataFrame:
    """Cells as Python objects with None for missing: ints print as ints and missing cells as
    'n/c' in the Markdown table (a float frame would print 1.00 and nan)."""
    df = df.copy()
    for col in df.columns:
        if df[col].dtype.kind == "f" and df[col].dropna().apply(float.is_integer).all():
            if col in ("K", "n_images", "best_epoch", "epochs"):
                df[col] = df[col].astype("Int64")
    return df.astype(object).where(df.notna(), None)
