"""A clutter-aware fine-tune of the shipped na_irstd (issue 23), measured as the model card measures.

Fine-tunes from INIT (default: the shipped weights) with the shipped recipe (`nairstd.shipped`:
native-resolution crops, scale augmentation, inpainted target-free samples, the false-alarm
loss) plus samples from generated clutter frames (`TrainConfig.clutter_p`; frames a seed apart
from the OOD check's sets), chooses the threshold on SIRST val by the shipped rule
(`choose_threshold`; never test), then reports SIRST test at that threshold and every OOD set of
the quick check, including the clutter proxy, with the shipped isolation test on (as predict
runs the shipped model; `--isolation off`: the raw detections). Writes
outputs/clutter_finetune/NAME.json.

    NAIRSTD_DATA=../shared/datasets python scripts/clutter_finetune.py NAME --clutter-p 0.3 \\
        [--steps 960] [--frame-stats] [--init nairstd/pretrained/na_irstd.pt] [--lr 2e-4]
    NAIRSTD_DATA=../shared/datasets python scripts/clutter_finetune.py shipped --measure-only
    # crops on INIT's own false targets on the training clutter frames (nairstd.hardneg):
    NAIRSTD_DATA=../shared/datasets python scripts/clutter_finetune.py NAME --clutter-p 0.15 --mine
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nairstd.data import find_dataset
from nairstd.hardneg import mine_file
from nairstd.io import write_text
from nairstd.ood import ood_check
from nairstd.operating import DEFAULT_MODEL, PRETRAINED
from nairstd.paths import outputs_root
from nairstd.shipped import (
    SHIPPED_ISOLATION,
    choose_threshold,
    evaluate_at,
    recipe_config,
    validation_sweep,
)
from nairstd.train import train
from nairstd.train.checkpoint import load_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--clutter-p", type=float, default=0.3)
    parser.add_argument("--steps", type=int, default=960)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--frame-stats", action="store_true")
    parser.add_argument("--init", default=str(PRETRAINED / f"{DEFAULT_MODEL}.pt"))
    parser.add_argument("--measure-only", action="store_true", help="score INIT as it is")
    parser.add_argument("--isolation", choices=("on", "off"), default="on")
    parser.add_argument(
        "--mine",
        action="store_true",
        help="crop clutter samples on INIT's false targets (mined on the training clutter frames)",
    )
    parser.add_argument("--mine-threshold", type=float, default=0.5)
    args = parser.parse_args()

    index = find_dataset("SIRST")
    start = time.time()
    result: dict = {"name": args.name, "init": args.init}
    structures = SHIPPED_ISOLATION["na_irstd"] if args.isolation == "on" else None
    result["reject_structures"] = structures.to_dict() if structures else None
    if args.measure_only:
        weights = Path(args.init)
    else:
        mined = ""
        if args.mine:
            frames = recipe_config("na_irstd", args.init).clutter_frames
            mined = str(mine_file(args.init, frames, args.mine_threshold))
            record = json.loads(Path(mined).read_text())
            result["mined"] = {k: record[k] for k in ("frames", "threshold", "false_targets")}
            result["mined"] |= {"file": mined, "mine_s": round(time.time() - start)}
            print(f"mined {record['false_targets']} false targets on {frames} frames -> {mined}")
        config = recipe_config("na_irstd", args.init).replace(
            clutter_mined=mined,
            clutter_p=args.clutter_p,
            max_steps=args.steps,
            lr_main=args.lr,
            frame_stats=args.frame_stats,
            threads=1,
        )
        run = train(config, runs_dir=outputs_root() / "runs", progress=False)
        weights = run.best_checkpoint
        result |= {"run_id": run.run_id, "config": config.to_dict(), "log": run.log.to_dict("list")}
        result["train_s"] = round(time.time() - start)
    model, ckpt = load_model(weights)
    rows = validation_sweep(model, index, structures=structures)
    chosen = choose_threshold(rows)
    threshold = float(chosen["threshold"])
    result |= {
        "threshold": threshold,
        "rule": chosen["rule"],
        "val": {k: chosen[k] for k in chosen if k not in ("rule",)},
        "val_sweep": rows,
        "test": evaluate_at(model, index, "test", threshold, structures),
        "ood": ood_check(
            model,
            index,
            "quick",
            threshold,
            "native",
            ckpt.get("preprocessing"),
            structures=structures,
        ),  # fmt: skip
        "wall_s": round(time.time() - start),
    }
    out = outputs_root() / "clutter_finetune" / f"{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, json.dumps(result, indent=1, default=str) + "\n")
    t = result["test"]
    print(f"{args.name}: threshold {threshold:g} ({chosen['rule']}); val Pd {chosen['Pd']:.2f}")
    print(f"  SIRST test: IoU {t['IoU']:.2f} Pd {t['Pd']:.2f} FT/frame {t['fa_per_frame']:.3f}")
    for r in result["ood"]:
        pd_text = "-" if r.get("Pd") is None else f"{r['Pd']:.2f}"
        print(f"  {r['set']:28s} Pd {pd_text:>6s}  FT/frame {r['fa_per_frame']:.3f}")
    print(f"  wall {result['wall_s']} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
