"""Table III's quick budget, before and after (issue 22): train one method as notebook 05 trains
it on SIRST, under quick's current Table III budget ("new": 640 steps on 128 px crops) or the
one it replaced ("old": 160 steps on whole 256x256 images), and print its wall time and
validation curve. Run both arms in one load window to compare wall times.

    NAIRSTD_DATA=../shared/datasets python scripts/table3_budget_ab.py dnanet new old
"""

from __future__ import annotations

import sys
import time

from nairstd.paths import outputs_root
from nairstd.profiles import Budget, get_profile
from nairstd.reproduce.arms import arm_configs
from nairstd.reproduce.common import budget_config
from nairstd.train import train

ARMS = {"new": get_profile("quick").main, "old": Budget(steps=160)}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or any(arm not in ARMS for arm in argv[1:]):
        print(__doc__)
        return 2
    model = argv[0]
    for arm in argv[1:]:
        if model == "na_irstd":  # Table III's Na-IRSTD: its two-stage, soft-label arm
            configs = arm_configs("quick", "two_stage_soft", "SIRST", 0, "main", ARMS[arm])
        else:
            configs = [
                budget_config(
                    "quick", "one", "main", budget=ARMS[arm], model=model, dataset="SIRST", seed=0
                )
            ]
        start = time.time()
        for config in configs:  # Stage 1, then Stage 2 (wall time: both)
            run = train(
                config, runs_dir=outputs_root() / "table3_budget_ab", log=lambda _line: None
            )
        best = (run.metrics.get("val") or {}).get("IoU")
        print(f"{model} {arm}: {ARMS[arm].describe()}")
        print(f"  wall {time.time() - start:.0f} s, best val IoU {best}")
        print(run.log[["epoch", "step", "loss", "val_IoU"]].to_string(index=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
