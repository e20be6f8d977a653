"""RPCANet's learning rate at Table III's budget (issue 22): train RPCANet as notebook 05 trains it
on SIRST (quick's Table III budget: 128 px crops, batch 8, validated on whole images every 4
epochs), cut to STEPS optimiser steps, under its recipe (Adam, poly) at another rate, and print
the wall time and the validation curve. The rates compared in the README were chosen on val.

    NAIRSTD_DATA=../shared/datasets python scripts/rpcanet_lr.py 5e-4 [STEPS=640] [SEED=0]
"""

from __future__ import annotations

import dataclasses
import sys
import time

from nairstd.paths import outputs_root
from nairstd.profiles import get_profile
from nairstd.reproduce.common import budget_config
from nairstd.train import recipes, train


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 3:
        print(__doc__)
        return 2
    lr = float(argv[0])
    steps = int(argv[1]) if len(argv) > 1 else 640
    seed = int(argv[2]) if len(argv) > 2 else 0
    # The run's optimiser is read from RECIPES at train time; this process only.
    recipes.RECIPES["rpcanet"] = dataclasses.replace(recipes.RECIPES["rpcanet"], lr=lr)
    config = budget_config(
        "quick", "one", "main", budget=get_profile("quick").main, model="rpcanet", dataset="SIRST"
    )
    config = dataclasses.replace(config, max_steps=steps, seed=seed, threads=1)
    start = time.time()
    run = train(config, runs_dir=outputs_root() / f"rpcanet_lr_{lr:g}", log=lambda _line: None)
    best = (run.metrics.get("val") or {}).get("IoU")
    print(
        f"rpcanet, Adam lr {lr:g} poly, {steps} steps, seed {seed}: wall {time.time() - start:.0f} s, "
        f"best val IoU {best}"
    )
    print(run.log[["epoch", "step", "loss", "val_IoU"]].to_string(index=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
