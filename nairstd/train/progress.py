"""What a training run prints (rank 0 only): a tqdm bar within each epoch when interactive, one
line per epoch (and every `progress_every` steps) otherwise."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pandas as pd

Logger = Callable[[str], None]


def interactive() -> bool:
    """True in a terminal or a Jupyter kernel: show tqdm bars; plain epoch lines otherwise."""
    if sys.stderr.isatty():
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """One epoch's log row as a line: losses, validation metrics, lr, time."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"step {row['step']}", f"loss {row['loss']:.4f}"]
    if "val_IoU" in row and not pd.isna(row.get("val_IoU")):
        parts.append(
            f"val IoU {row['val_IoU']:.1f} nIoU {row['val_nIoU']:.1f} Pd {row['val_Pd']:.1f} "
            f"Fa {row['val_Fa']:.1f}"
        )
    if "val_coverage" in row and not pd.isna(row.get("val_coverage")):
        parts.append(f"val cov {row['val_coverage']:.1f} prec {row['val_precision']:.1f}")
    if "val_score_loss" in row and not pd.isna(row.get("val_score_loss")):
        parts.append(f"val L_score {row['val_score_loss']:.4f}")
    parts.append(f"lr {row['lr']:.2e}")
    parts.append(f"{row['time_s']:.1f} s")
    return " ".join(parts)


class Progress:
    """Rank 0's output: lines through `say`, or above the epoch's tqdm bar while one is open."""

    def __init__(self, say: Logger, bars: bool | None, is_main: bool) -> None:
        self.say_raw = say
        self.bars = (interactive() if bars is None else bars) and is_main
        self.is_main = is_main
        self.bar: Any = None

    def say(self, line: str) -> None:
        if not self.is_main:
            return
        if self.bar is not None:
            from tqdm.auto import tqdm

            tqdm.write(line)
        else:
            self.say_raw(line)

    def open(self, total: int, initial: int, desc: str) -> None:
        if self.bars:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True
            )

    def step(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
