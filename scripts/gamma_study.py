"""The injection-gamma study behind the quick profile's lr_gamma (README, "Injection gamma").

Trains, on SIRST's train split with the quick claims budget (Stage 1 80 + Stage 2 240 steps, whole
256x256 images, batch 8), Na-IRSTD two-stage soft under four gamma settings and the detector
(one-stage, 320 steps) for one seed, and prints the best validation IoU of each (never test).
    python scripts/gamma_study.py SEED      # e.g. 0 and 1 in two processes, one thread each
"""

import json
import sys

from nairstd.profiles import get_profile
from nairstd.train import profile_config, train

LR_MAIN = 5e-4  # the profile's lr_main: gamma in its own group at this rate = the old behaviour
ARMS = {
    "gamma0=0, lr_main": dict(model_overrides={"gamma_init": 0.0}, lr_gamma=LR_MAIN),
    "gamma0=0, lr 1e-2": dict(model_overrides={"gamma_init": 0.0}, lr_gamma=1e-2),
    "gamma0=1, lr_main": dict(model_overrides={"gamma_init": 1.0}, lr_gamma=LR_MAIN),
    "gamma0=1, lr 1e-2": dict(model_overrides={"gamma_init": 1.0}, lr_gamma=1e-2),
}


def main(seed: int) -> dict:
    budget = get_profile("quick").claims
    quiet = dict(progress=False, log=lambda line: None)
    out = {}
    cfg = profile_config(
        "quick", "one", model="detector", dataset="SIRST", seed=seed, **budget.fields("one")
    )
    out["detector"] = {"val_IoU": train(cfg, **quiet).metrics["val"]["IoU"]}
    for name, fields in ARMS.items():
        cfg = profile_config(
            "quick",
            "2",
            model="na_irstd",
            dataset="SIRST",
            seed=seed,
            **budget.fields("2"),
            **fields,
        )
        run = train(cfg, **quiet)
        gammas = [c for c in run.log.columns if c.startswith("gamma_")]
        out[name] = {
            "val_IoU": run.metrics["val"]["IoU"],
            "gamma_final": run.log[gammas].iloc[-1].round(3).tolist(),
        }
        print(seed, name, out[name], flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1])), indent=1))
