"""outputs/REPORT.md: an index of every table and figure, with what made them.

Called by run_all.sh after the notebooks (`python -m nairstd.report --profile P --times FILE`)
and, when a notebook fails, to name the failing cell (`python -m nairstd.report --failed NB`).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from nairstd.io import write_text
from nairstd.paths import git_commit, outputs_root
from nairstd.profiles import DEFAULT_PROFILE, PROFILES
from nairstd.reproduce.claims import claims_markdown
from nairstd.reproduce.reference_report import reference_section


def machine() -> str:
    import os

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, {device}); "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def failing_cell(executed_notebook: Path) -> str:
    """'cell N: first line of its source — ErrorName: message' for the first failed cell."""
    import nbformat

    nb = nbformat.read(executed_notebook, as_version=4)
    for number, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                first_line = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                return (
                    f"cell {number} ({first_line[:60]!r}): "
                    f"{output.get('ename')}: {output.get('evalue', '')[:300]}"
                )
    return "no failed cell recorded"


def _title(path: Path) -> str:
    """First Markdown heading of a table's .md twin, else its file name."""
    md = path.with_suffix(".md")
    if md.is_file():
        for line in md.read_text().splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return path.stem.replace("_", " ")


def operating_markdown(out: Path) -> list[str]:
    """Notebook 05's Pd-false alarm figure and out-of-distribution table, when made."""
    lines: list[str] = []
    figure = out / "figures" / "pd_fa_curves.png"
    table = out / "tables" / "ood_check.md"
    if figure.is_file() or table.is_file():
        lines += ["## Operating points and out-of-distribution check", ""]
    if figure.is_file():
        lines += [f"![Pd against false alarms](figures/{figure.name})", ""]
    if table.is_file():
        body = table.read_text().splitlines()
        lines += [*(body[1:] if body and body[0].startswith("#") else body), ""]
    return lines


def write_report(profile: str, times: dict[str, float], out: Path | None = None) -> Path:
    out = out or outputs_root()
    lines = [
        "# Na-IRSTD reproduction — report",
        "",
        f"- profile: **{profile}**",
        f"- commit: `{git_commit()}`",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}",
        "",
        *claims_markdown(out, profile, *reference_section(out)),
        *operating_markdown(out),
        "## Notebooks",
        "",
        "| notebook | seconds | executed copy | HTML |",
        "|---|---:|---|---|",
    ]
    for name, seconds in times.items():
        html = f"notebooks/{name}.html"
        lines.append(
            f"| {name} | {seconds:.0f} | [ipynb](notebooks/{name}.ipynb) | "
            f"{f'[html]({html})' if (out / html).is_file() else '—'} |"
        )
    lines += ["", f"Total: {sum(times.values()):.0f} s", "", "## Tables", ""]
    tables = sorted((out / "tables").glob("*.csv"))
    lines += [
        f"- [{_title(t)}](tables/{t.with_suffix('.md').name}) ([csv](tables/{t.name}))"
        for t in tables
    ] or ["- none"]
    lines += ["", "## Figures", ""]
    figures = sorted((out / "figures").glob("*.png"))
    for figure in figures:
        lines += [f"### {figure.stem}", "", f"![{figure.stem}](figures/{figure.name})", ""]
    if not figures:
        lines.append("- none")
    return write_text(out / "REPORT.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nairstd.report")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES)
    parser.add_argument("--times", help="JSON file: notebook name -> seconds")
    parser.add_argument("--failed", help="executed notebook whose failing cell to print")
    args = parser.parse_args(argv)
    if args.failed:
        print(failing_cell(Path(args.failed)))
        return 0
    times = json.loads(Path(args.times).read_text()) if args.times else {}
    print(write_report(args.profile, times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
