"""The shipped models: trained on SIRST with the package's own code, the weights in the repo.

    python -m nairstd.shipped                 # retrain both, choose thresholds on val, export
    python -m nairstd.shipped --model na_irstd

`predict` uses the shipped na_irstd when no --checkpoint is given. Each model is fine-tuned from a
base run (`BASES`) by the recipe below (native-resolution crops, scale augmentation, target-free
samples with the false-alarm loss); its operating threshold is chosen on SIRST *validation* (never
test) by `choose_threshold`: the most validation Pd that keeps the false targets per frame on the
validation frames with their targets inpainted out (native, 640x512, 1920x1080) within bounds.
The export is a nairstd checkpoint that also records `protocol`, `threshold` and its validation
metrics, and `MODEL_CARD.md` beside it says how it was made.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from nairstd.data.images import DataError
from nairstd.io import InputFiles, save_torch, write_text
from nairstd.isolation import IsolationTest, structure_test, suppress_structure_ends
from nairstd.operating import DEFAULT_MODEL, PRETRAINED
from nairstd.protocols import NATIVE
from nairstd.sweep import DEFAULT_THRESHOLDS as THRESHOLDS  # 0.05..0.95, steps of 0.05

FA_GOAL = 0.2  # false targets per target-free val frame aimed at (issue 12's goal)
FA_BAR = 0.5  # ... accepted when no threshold reaches FA_GOAL with val Pd >= PD_FLOOR (its bar)
PD_FLOOR = 90.0  # val Pd the operating point must keep
FA_CAP = 2.0  # never trade more false targets per target-free val frame than this for Pd
# Target-free val sets the rule counts false targets on: the val frames with their targets
# inpainted out at their own size and rescaled to the sensor sizes of the OOD check (nairstd.ood).
# A model trained on SIRST sizes raises most of its false alarms on the rescaled frames, so a
# threshold chosen on native frames alone does not hold there.
EMPTY_SIZES = ("native", "640x512", "1920x1080")

# The recipe, in two runs per model (both through `train`, so both are cached and resumable):
# 1. the base (`BASES`): the detector's is the quick claims-budget run of Tables I / V (whole
#    256x256 SIRST frames, resize256, 320 one-stage steps), seed 0; na_irstd's, since 2026-12-07,
#    the reference budget's two-stage soft run at twice its budget (below);
# 2. the fine-tune from it at native resolution: 128x128 crops of frames rescaled 0.5-2x,
#    target-free samples (crops without targets, frames with targets inpainted out) with the
#    false-alarm loss, 480 steps at a lower rate. A first try trained 1 with the options of 2 from
#    scratch (160 + 480 and 160 + 960 steps): val Pd stayed at 50-65 %.
FINETUNE: dict[str, Any] = dict(
    dataset="SIRST",
    size="tiny",
    protocol=NATIVE,
    crop_size=128,
    batch_size=8,
    scale_min=0.5,
    scale_max=2.0,
    target_crop_p=0.7,
    background_p=0.2,
    fa_weight=0.5,
    max_steps=480,
    lr_main=2e-4,
    val_every=5,
    seed=0,
)
# The model overrides of the fine-tune (and, until 2026-12-07, of na_irstd's quick base):
# gamma_init 0.0 is the default, written out so the fine-tune's run id stays that of the runs the
# README measured (README, "Injection gamma").
BASE_OVERRIDES: dict[str, dict[str, Any]] = {"na_irstd": {"gamma_init": 0.0}, "detector": {}}
RECIPES: dict[str, str] = {"na_irstd": "2", "detector": "one"}  # model -> fine-tune stage
# Per model on top of FINETUNE. na_irstd, second recipe (issue 12): 256x256 crops (more background
# context per sample), frames rescaled 0.5-6x (the 640x512 and 1920x1080 frames of the OOD check
# are SIRST frames enlarged 2-7x), target-free samples p=0.4, false-alarm weight 0.25, 4x the
# steps. Chosen among six fine-tunes of the same base on SIRST val by `choose_threshold` (at each
# one's operating point: val Pd >= 90 with the fewest false targets on the worst target-free val
# set; test only reported). The candidates and their figures: README, "Shipped model".
RECIPE_OVERRIDES: dict[str, dict[str, Any]] = {
    "detector": {},
    "na_irstd": dict(
        crop_size=256, scale_max=6.0, background_p=0.4, fa_weight=0.25, max_steps=1920
    ),
}


# The isolation test each shipped model is exported with (predict applies what the checkpoint
# records; nairstd.isolation): na_irstd's false targets on urban / road frames sit on the bright
# ends of larger structures (issue 23). Its parameters were chosen on SIRST val and the clutter
# proxy with na_irstd; the threshold is then chosen on val with the test on, by `choose_threshold`.
# The detector's val Pd is the same with it at every threshold, its false targets fewer.
SHIPPED_ISOLATION: dict[str, IsolationTest] = {
    "na_irstd": IsolationTest(),
    "detector": IsolationTest(),
}


# What each shipped model is fine-tuned from, as the card states it. na_irstd's base was the quick
# claims-budget run (Stage 1 80 + Stage 2 240 steps) until 2026-12-07. The same recipe from the
# reference run at twice its budget (issue 21's doubled two_stage_soft unit, 20x the steps) won
# on val by `choose_threshold`'s rule: val Pd 90.72 with 0.60 false targets per enlarged
# target-free val frame at threshold 0.85, against 0.75 at 0.55; val IoU at 0.55 64.9 against
# 58.3 (README, "Shipped models", "A longer base": every number, before and after).
BASES: dict[str, str] = {
    "na_irstd": "reference budget at 2x (`python -m nairstd reference`, unit"
    " SIRST/two_stage_soft/seed0-x2: Stage 1 1600 + Stage 2 4800 steps on whole 256x256 frames,"
    " resize256, seed 0; its result bundle: `results/reference/SIRST/two_stage_soft/seed0-x2`)",
    "detector": "quick claims budget: whole 256x256 frames, resize256, seed 0",
}
# Base + fine-tune + export on one CPU thread, as measured (the card's "regenerate" line).
REGENERATE_COST = {"na_irstd": "~1.5 h", "detector": "~15 min"}


def base_configs(name: str) -> list:
    """The base run(s) of a shipped model, in training order."""
    from nairstd.reproduce.common import budget_config
    from nairstd.reproduce.reference import Unit

    if name == "na_irstd":
        return Unit("SIRST", "two_stage_soft", 0, scale=2).configs()
    # lr_gamma is meaningless without injection; None as in the cached Table I detector runs.
    base = budget_config("quick", "one", "claims", model=name, dataset="SIRST", seed=0)
    return [base.replace(lr_gamma=None)]


def recipe_config(name: str, init_from: str | Path):
    """The fine-tune TrainConfig of a shipped model, starting from `init_from`."""
    from nairstd.train.config import profile_config

    return profile_config(
        "quick",
        RECIPES[name],
        model=name,
        init_from=str(init_from),
        model_overrides=dict(BASE_OVERRIDES[name]),
        **(FINETUNE | RECIPE_OVERRIDES[name]),
    )


def train_shipped(name: str, runs_dir: str | None = None):
    """Train (or reuse) the base run(s) and the fine-tune of a shipped model; its RunResult."""
    from nairstd.train import train

    base = None
    for config in base_configs(name):
        if base is not None and config.stage == "2":
            config = config.replace(init_from=str(base.best_checkpoint))
        base = train(config, runs_dir=runs_dir, progress=False)
    return train(recipe_config(name, base.best_checkpoint), runs_dir=runs_dir, progress=False)


def empty_keys(row: dict[str, Any]) -> list[str]:
    """The row's false-target columns on target-free val sets (`fa_per_frame_empty[_<size>]`)."""
    return [k for k in row if k.startswith("fa_per_frame_empty")]


def val_record(point: dict[str, Any]) -> dict[str, Any]:
    """What a model records of its validation sweep row at its operating point."""
    return {k: point[k] for k in ("Pd", "Fa", "fa_per_frame", "IoU", *empty_keys(point))}


def choose_threshold(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The operating point from validation sweep rows ({threshold, Pd, fa_per_frame_empty...}),
    by the worst of the target-free val sets (`worst_empty`), in this order:
    1. Pd >= PD_FLOOR and worst_empty <= FA_GOAL: the highest Pd (ties: the higher threshold);
    2. Pd >= PD_FLOOR and worst_empty <= FA_BAR: the highest Pd;
    3. Pd >= PD_FLOOR and worst_empty <= FA_CAP: the fewest false targets;
    4. worst_empty <= FA_CAP: the highest Pd (a model that reaches PD_FLOOR only by flooding
       frames with false targets keeps a usable threshold);  5. the fewest false targets."""
    rows = [{**r, "worst_empty": max(r[k] for k in empty_keys(r))} for r in rows]
    kept = [r for r in rows if r["Pd"] >= PD_FLOOR]
    for limit in (FA_GOAL, FA_BAR):
        ok = [r for r in kept if r["worst_empty"] <= limit]
        if ok:
            best = max(ok, key=lambda r: (r["Pd"], r["threshold"]))
            rule = f"max val Pd >= {PD_FLOOR} with <= {limit} false targets per target-free frame"
            return {**best, "rule": rule}
    capped = [r for r in kept if r["worst_empty"] <= FA_CAP]
    if capped:
        best = min(capped, key=lambda r: (r["worst_empty"], -r["Pd"]))
        return {
            **best,
            "rule": f"fewest false targets per target-free val frame with val Pd >= {PD_FLOOR}",
        }
    capped = [r for r in rows if r["worst_empty"] <= FA_CAP]
    if capped:
        best = max(capped, key=lambda r: (r["Pd"], r["threshold"]))
        return {**best, "rule": f"max val Pd with <= {FA_CAP} false targets per target-free frame"}
    best = min(rows, key=lambda r: (r["worst_empty"], -r["Pd"]))
    return {**best, "rule": "fewest false targets per target-free val frame"}


def validation_sweep(
    model,
    index,
    device: str = "cpu",
    sizes: tuple[str, ...] = EMPTY_SIZES,
    structures: IsolationTest | None = None,
) -> list[dict[str, Any]]:
    """Per threshold: val Pd / Fa / false targets per frame (frames with targets, native) and
    false targets per frame on the val frames with their targets inpainted out, at each of
    `sizes` (`fa_per_frame_empty` at native size, `fa_per_frame_empty_<WxH>` rescaled).
    `structures`: at each threshold, the detections the isolation test calls structure ends are
    dropped first, as predict drops them."""
    from nairstd.data.background import inpaint_targets
    from nairstd.data.images import resize_image
    from nairstd.ood import SIZES
    from nairstd.sweep import probability_maps, sweep

    stems = index.split("val")
    frames = [index.load(s) for s in stems]
    images = [image for image, _ in frames]
    rows = sweep(probability_maps(model, frames, device=device), THRESHOLDS, images, structures)
    empty = [inpaint_targets(img, m, seed=i) for i, (img, m) in enumerate(frames)]
    for size in sizes:
        scaled = empty if size == "native" else [resize_image(img, SIZES[size]) for img in empty]
        pairs = [(img, np.zeros(img.shape, bool)) for img in scaled]
        key = "fa_per_frame_empty" if size == "native" else f"fa_per_frame_empty_{size}"
        maps = probability_maps(model, pairs, device=device)
        for row, e in zip(rows, sweep(maps, THRESHOLDS, scaled, structures)):
            row[key] = e["fa_per_frame"]
    return rows


def evaluate_at(
    model, index, split: str, threshold: float, structures: IsolationTest | None = None
) -> dict[str, Any]:
    """IoU, Pd, Fa and false targets per frame on a split (native), at `threshold` (with the
    isolation test `structures`, as predict applies it)."""
    from nairstd.metrics import IRSTDMetrics
    from nairstd.sweep import probability_maps

    metrics = IRSTDMetrics(threshold=threshold)
    frames = [index.load(s) for s in index.split(split)]
    for (image, _), (prob, gt) in zip(frames, probability_maps(model, frames)):
        if structures is not None:
            prob, _ = suppress_structure_ends(image, prob, threshold, structures)
        metrics.update(prob, gt)
    m = metrics.compute()
    return {"IoU": m["IoU"], "Pd": m["Pd"], "Fa": m["Fa"], "fa_per_frame": m["FA_per_image"]}


# The card's deployment line (README, "Deploy: ONNX and onnxruntime", holds the measurements).
DEPLOYMENT = (
    "- deployment: `python -m nairstd export --checkpoint nairstd/pretrained/<name>.pt --out"
    " <name>.onnx` writes one checked ONNX graph (protocol, threshold and preprocessing in its"
    " metadata) that `predict --checkpoint <name>.onnx` runs on onnxruntime; **`predict --backend"
    " onnxruntime` was the fastest way to run these models on one CPU thread**: with its"
    " fixed-size graphs (one per repeated frame size, exported in seconds) the forward ran"
    " 1.10-1.65x torch eager's speed at 640x512 and 1.55-1.58x at 1920x1080 for na_irstd"
    " (torch.compile: 1.08-1.18x and 1.37-1.51x), on a loaded 2-core machine; a dynamic-size"
    " `export` was slower than eager at 640x512 (export `--size WxH` for a camera instead). On"
    " every SIRST test frame, native and rescaled to 640x512 and 1920x1080, onnxruntime matched"
    " PyTorch within 2e-5 with the same detections. The default backend stays torch."
)


def write_model_card(out_dir: Path = PRETRAINED) -> Path:
    """MODEL_CARD.md from every `<name>.json` export summary in `out_dir`."""
    summaries = sorted(out_dir.glob("*.json"))
    InputFiles(summaries).refuse(out_dir / "MODEL_CARD.md")
    infos = [json.loads(p.read_text()) for p in summaries]
    lines = [
        "# Shipped models",
        "",
        "Trained on SIRST with this package's own code (`python -m nairstd.shipped`, the recipe in",
        "`nairstd/shipped.py`). `python -m nairstd predict --input frames/ --output out/` uses",
        f"`{DEFAULT_MODEL}.pt` when no `--checkpoint` is given, under the protocol and threshold",
        "below (`--protocol`, `--threshold` override them).",
        "",
        "- data: SIRST (`../shared/datasets/SIRST`), its own split lists `idx_427/{train,val,test}`"
        + "".join(
            f" ({i['dataset']['name']}: train {i['dataset']['train']} / val {i['dataset']['val']} / test"
            f" {i['dataset']['test']} frames)"
            for i in infos[:1]
        )
        + "; trained on train, checkpoint and threshold chosen on val, test only reported",
        "- threshold: chosen on val over 0.05..0.95 in steps of 0.05 (`choose_threshold` in"
        " `nairstd/shipped.py`; each model's rule is stated below). Current rule: the highest val Pd"
        f" >= {PD_FLOOR} % with at most {FA_GOAL} (else {FA_BAR}) false targets per frame on every"
        " target-free val set (the val frames with their targets inpainted out, at their own size"
        f" and rescaled to 640x512 and 1920x1080); else the fewest such false targets with val Pd"
        f" >= {PD_FLOOR} % if at most {FA_CAP}; else the highest val Pd with at most {FA_CAP}",
        "- false targets per frame = predicted objects matching no target (8-connected,"
        " centroid < 3 px), per frame",
        DEPLOYMENT,
        "",
        "**Calibration on your own sensor.** These thresholds were chosen on SIRST validation"
        " frames, and false alarms depend on the sensor and the scene (the OOD rows below: more"
        " false targets on enlarged frames). With frames from your sensor that hold no target,"
        " `python -m nairstd calibrate --background empty_frames/ --out mine.pt"
        " [--max-false-per-frame 0.2] [--holdout 0.25]` takes the lowest threshold of 0.05..0.99"
        " whose false targets per frame (the detections `predict` would report) stay within the"
        " budget and writes a copy of the checkpoint carrying it with the evidence (frames, the"
        " hash of their names, the curve, budget, date, the source's SHA-256);"
        " `predict --checkpoint mine.pt` uses it. It warns when the budget is met only where the"
        " recorded validation Pd is under 80 %, and when held-out frames exceed the budget; it"
        " writes nothing when no threshold meets it. Measured on SIRST frames standing in for a"
        ' sensor: README, "Deploy on your own sensor: calibrate".',
        "",
    ]
    for info in infos:
        c = info["config"]
        v, t = info["val_at_threshold"], info["test_at_threshold"]
        lines += [
            f"## {info['name']}",
            "",
            f"- file: `nairstd/pretrained/{info['name']}.pt` (run `{info['run_id']}`, commit"
            f" `{info['commit']}`, {info['date']})",
            f"- regenerate: `{info['command']}` (base + fine-tune + export on one CPU thread:"
            f" {REGENERATE_COST.get(info['name'], 'not measured')})",
            f"- protocol **{info['protocol']}**, threshold **{info['threshold']}**"
            f" (rule: {info['threshold_rule']})",
            *_isolation_lines(info),
            f"- base: `{info.get('base_run') or Path(c['init_from']).parent.name}`"
            f" ({info.get('base') or BASES.get(info['name'], 'not recorded')})",
            f"- fine-tune: {c['model']} {c['size']}, stage {c['stage']}, {c['max_steps']} steps,"
            f" batch {c['batch_size']}, {c['crop_size']}x{c['crop_size']} crops at native"
            f" resolution of frames rescaled {c['scale_min']}-{c['scale_max']}x, crops on a target"
            f" with p={c['target_crop_p']}, target-free samples p={c['background_p']}, false-alarm"
            f" loss weight {c['fa_weight']}, lr_main {c['lr_main']}, seed {c['seed']}",
            f"- SIRST val at the threshold: Pd {v['Pd']:.2f} %, Fa {v['Fa']:.2f} x1e-6, false"
            f" targets per frame {v['fa_per_frame']:.3f}; on target-free val frames "
            + ", ".join(
                f"{v[k]:.3f} ({k.removeprefix('fa_per_frame_empty_') if '_empty_' in k else 'native'})"
                for k in empty_keys(v)
            )
            + " (recorded in the checkpoint; `tests/test_shipped.py` checks them)",
            f"- SIRST test at the threshold: IoU {t['IoU']:.2f}, Pd {t['Pd']:.2f} %, Fa"
            f" {t['Fa']:.2f} x1e-6, false targets per frame {t['fa_per_frame']:.3f}",
            "",
            "| OOD set (nairstd.ood, quick) | size | frames | Pd | false targets / frame"
            " | frames with any | their median area px | their median peak |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in info["ood_quick"]:
            lines.append(
                f"| {r['set']} | {r['size']} | {r['frames']} | {_cell(r['Pd'], '.2f')}"
                f" | {r['fa_per_frame']:.3f} | {_cell(r.get('frames_with_false'), '.0%')}"
                f" | {_cell(r.get('false_area_median'), 'g')}"
                f" | {_cell(r.get('false_peak_median'), '.2f')} |"
            )
        lines += [
            "",
            "`synthetic-clutter` / `synthetic-clutter-targets` (issue 23): urban, road and skyline"
            " frames at 640x512, 1280x1024 and 1920x1080 (8- and 16-bit) that stand in for users'"
            " real target-free frames, on which the na_irstd shipped on 2026-11-26 raised 3.0 false"
            " targets per frame (69 % of frames with any; median area 4 px, median peak 0.84): README,"
            ' "A proxy that looks like real clutter". "frames with any": frames holding at least'
            " one false target; `-`: undefined (Pd without targets, area and peak without false"
            " targets) or not recorded. Rows are re-measured from the shipped weights by"
            " `python -m nairstd.shipped --update-ood [SET ...]`.",
            "",
        ]
    return write_text(out_dir / "MODEL_CARD.md", "\n".join(lines) + "\n")


def _isolation_lines(info: dict[str, Any]) -> list[str]:
    """The card's lines on a model's isolation test and a re-chosen operating point."""
    test, lines = info.get("reject_structures"), []
    if test:
        lines.append(
            f"- **structure ends rejected**: predict drops a detection whose bright region, grown"
            f" from its peak at background + {test['alpha']:g} x (peak - background), leaves a"
            f" {2 * test['window'] + 1} px window or exceeds {test['area_max']} px (lamp heads on"
            " bright poles, roof corners, roof-top plant; `nairstd/isolation.py`); eval, ood and"
            " calibrate count as predict does; `--reject-structures off` turns it off. The"
            " threshold and every figure below are with it"
        )
    again = info.get("rechosen")
    if again:
        before = again["before"]
        lines.append(
            f"- operating point re-chosen from these weights on {again['date']} (commit"
            f" `{again['commit']}`, `{again['command']}`): threshold {before['threshold']} ->"
            f" {info['threshold']}, by the same rule, on val only"
        )
    return lines


def _cell(value: Any, fmt: str) -> str:
    """A table cell: '-' for a value not recorded (None) or undefined (NaN)."""
    if value is None or value != value:
        return "-"
    return format(value, fmt)


def update_ood(
    names: list[str], sets: list[str] | None = None, out_dir: Path = PRETRAINED
) -> list[dict[str, Any]]:
    """Measure OOD sets (`sets`; None: all) of the exported models `names` from their weights
    (never retrained, never rewritten) and merge the rows into `<name>.json`, replacing a row of
    the same set; then rewrite MODEL_CARD.md. Returns the rows measured."""
    from nairstd.data import find_dataset
    from nairstd.ood import CLUTTER_SETS, ood_check
    from nairstd.train.checkpoint import load_model

    measured = []
    for name in names:
        summary = out_dir / f"{name}.json"
        info = json.loads(summary.read_text())
        weights = out_dir / f"{name}.pt"
        InputFiles([weights]).refuse(summary, out_dir / "MODEL_CARD.md")
        model, ckpt = load_model(weights)
        needs_data = sets is None or set(sets) - set(CLUTTER_SETS)
        index = find_dataset(info["dataset"]["name"]) if needs_data else None
        rows = ood_check(
            model, index, "quick", info["threshold"], info["protocol"],
            ckpt.get("preprocessing"), only=sets,
            structures=structure_test("auto", ckpt),  # as predict runs it
        )  # fmt: skip
        fresh = {r["set"]: r for r in rows}
        kept = [fresh.pop(r["set"], r) for r in info.get("ood_quick", [])]
        info["ood_quick"] = kept + list(fresh.values())
        write_text(summary, json.dumps(info, indent=1, default=str) + "\n")
        measured += [{"model": name, **r} for r in rows]
    write_model_card(out_dir)
    return measured


def rechoose(name: str, out_dir: Path = PRETRAINED) -> dict[str, Any]:
    """Re-choose an exported model's operating point with its isolation test (SHIPPED_ISOLATION)
    from its shipped weights (never retrained, the weights never changed): the validation sweep
    and `choose_threshold` as `export` runs them, then its SIRST test row and OOD rows measured
    as predict runs it. Rewrites `<name>.pt`'s threshold, records and `reject_structures`,
    `<name>.json` and MODEL_CARD.md; returns the new summary."""
    import torch

    from nairstd.data import find_dataset
    from nairstd.ood import ood_check
    from nairstd.train.checkpoint import load_model

    weights, summary = out_dir / f"{name}.pt", out_dir / f"{name}.json"
    info = json.loads(summary.read_text())
    model, ckpt = load_model(weights)
    raw = torch.load(weights, map_location="cpu", weights_only=True)  # what is rewritten
    index = find_dataset(info["dataset"]["name"])
    structures = SHIPPED_ISOLATION.get(name)
    rows = validation_sweep(model, index, structures=structures)
    point = choose_threshold(rows)
    val_at = val_record(point)
    previous = {k: info.get(k) for k in ("threshold", "threshold_rule", "test_at_threshold")}
    info.update(
        threshold=point["threshold"],
        threshold_rule=point["rule"],
        val_at_threshold=val_at,
        val_sweep=rows,
        reject_structures=structures.to_dict() if structures else None,
        rechosen={
            "commit": _commit(),
            "date": datetime.date.today().isoformat(),
            "command": f"python -m nairstd.shipped --rechoose --model {name}",
            "before": previous,
        },
    )
    info["test_at_threshold"] = evaluate_at(model, index, "test", point["threshold"], structures)
    info["ood_quick"] = ood_check(
        model, index, "quick", point["threshold"], info["protocol"],
        ckpt.get("preprocessing"), structures=structures,
    )  # fmt: skip
    metrics = dict(raw.get("metrics") or {})
    metrics.update(val_at_threshold=val_at, val_sweep=rows)
    raw.update(threshold=point["threshold"], metrics=metrics)
    raw["reject_structures"] = info["reject_structures"]
    save_torch(raw, weights)
    write_text(summary, json.dumps(info, indent=1, default=str) + "\n")
    write_model_card(out_dir)
    return info


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def base_run_id(init_from: str | None) -> str | None:
    """The run id recorded in the checkpoint a fine-tune started from (its folder's name when the
    file is gone or does not say)."""
    from nairstd.train.checkpoint import read_checkpoint

    if not init_from:
        return None
    try:
        return read_checkpoint(init_from).get("run_id") or Path(init_from).parent.name
    except DataError:
        return Path(init_from).parent.name


def export_outputs(name: str, out_dir: Path = PRETRAINED) -> list[Path]:
    """The files `export` writes for model `name`."""
    return [out_dir / f"{name}.pt", out_dir / f"{name}.json", out_dir / "MODEL_CARD.md"]


def export_inputs(run_folder: Path, ckpt: dict[str, Any], index: Any) -> InputFiles:
    """What `export` reads: the run folder's files, the checkpoint it starts from, the dataset."""
    run_folder = Path(run_folder)
    inputs = InputFiles(p for p in run_folder.rglob("*") if p.is_file())
    inputs.add([ckpt["path"]] + [p for p in [ckpt["config"].get("init_from")] if p])
    return inputs.add(p for p in Path(index.root).rglob("*") if p.is_file())


def export(name: str, run_folder: Path, out_dir: Path = PRETRAINED) -> dict[str, Any]:
    """Choose the threshold on val and write `<out_dir>/<name>.pt` + its `.json` summary."""
    from nairstd.data import find_dataset
    from nairstd.train.checkpoint import load_model, model_checkpoint

    model, ckpt = load_model(run_folder)
    config = ckpt["config"]
    index = find_dataset(config["dataset"])
    export_inputs(run_folder, ckpt, index).refuse(*export_outputs(name, out_dir))
    structures = SHIPPED_ISOLATION.get(name)
    rows = validation_sweep(model, index, structures=structures)
    point = choose_threshold(rows)
    info = {
        "name": name,
        "run_id": ckpt.get("run_id"),
        "commit": _commit(),
        "date": datetime.date.today().isoformat(),
        "protocol": config["protocol"],
        "threshold": point["threshold"],
        "threshold_rule": point["rule"],
        "val_at_threshold": val_record(point),
        "val_sweep": rows,
        "dataset": {"name": index.name, "train": len(index.split("train"))}
        | {"val": len(index.split("val")), "test": len(index.split("test"))},
        "config": config,
        "command": f"python -m nairstd.shipped --model {name}",
        "reject_structures": structures.to_dict() if structures else None,
        "base": BASES.get(name),
        "base_run": base_run_id(config.get("init_from")),
    }
    shipped = model_checkpoint(
        model,
        ckpt["model"],
        ckpt["size"],
        ckpt.get("overrides", {}),
        run_id=ckpt.get("run_id"),
        config=config,
        epoch=ckpt.get("epoch"),
        protocol=config["protocol"],
        threshold=point["threshold"],
        metrics={
            "val": ckpt.get("metrics", {}).get("val"),
            "val_at_threshold": info["val_at_threshold"],
            # Pd at every threshold: `calibrate` warns when a user's budget costs val Pd.
            "val_sweep": rows,
        },
    )
    shipped["reject_structures"] = info["reject_structures"]  # predict applies it (auto)
    # Measured once here and written into the card (test is reported, never used to choose).
    test = evaluate_at(model, index, "test", point["threshold"], structures)
    info["test_at_threshold"] = test
    from nairstd.ood import ood_check

    info["ood_quick"] = ood_check(
        model, index, "quick", point["threshold"], config["protocol"], structures=structures
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    save_torch(shipped, out_dir / f"{name}.pt")
    write_text(out_dir / f"{name}.json", json.dumps(info, indent=1, default=str) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nairstd.shipped", description=__doc__)
    parser.add_argument("--model", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--runs", help="runs folder (default <outputs>/runs)")
    parser.add_argument("--out", default=str(PRETRAINED), help="where the weights go")
    parser.add_argument("--card-only", action="store_true", help="rewrite MODEL_CARD.md only")
    parser.add_argument(
        "--update-ood",
        nargs="*",
        metavar="SET",
        help="measure these OOD sets (none named: all) of the exported weights, record them in "
        "<model>.json and rewrite MODEL_CARD.md; trains and rewrites no weights",
    )
    parser.add_argument(
        "--rechoose",
        action="store_true",
        help="re-choose the exported models' thresholds on val with their isolation test "
        "(SHIPPED_ISOLATION) and re-measure their test and OOD rows; the weights are kept",
    )
    args = parser.parse_args(argv)
    try:
        if args.card_only:
            print(write_model_card(Path(args.out)))
            return 0
        if args.rechoose:
            from nairstd.train.config import cpu_threads

            with cpu_threads(1):
                for name in args.model:
                    info = rechoose(name, Path(args.out))
                    print(
                        f"{name}: threshold {info['rechosen']['before']['threshold']} -> "
                        f"{info['threshold']} ({info['threshold_rule']}); test "
                        + json.dumps(info["test_at_threshold"]),
                        flush=True,
                    )
            return 0
        if args.update_ood is not None:
            from nairstd.train.config import cpu_threads

            with cpu_threads(1):
                rows = update_ood(args.model, args.update_ood or None, Path(args.out))
            for r in rows:
                print(json.dumps(r, default=str), flush=True)
            return 0
        from nairstd.data import find_dataset

        data = find_dataset(FINETUNE["dataset"]).root  # before training: its outputs vs the data
        dataset_files = InputFiles(p for p in Path(data).rglob("*") if p.is_file())
        for name in args.model:
            dataset_files.refuse(*export_outputs(name, Path(args.out)))
        for name in args.model:
            result = train_shipped(name, args.runs)
            info = export(name, Path(result.run_dir), Path(args.out))
            print(
                f"{name}: threshold {info['threshold']} ({info['threshold_rule']}); val "
                + json.dumps(info["val_at_threshold"]),
                flush=True,
            )
        write_model_card(Path(args.out))
    except (ValueError, DataError) as err:  # bad input: one line, as `python -m nairstd` does
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
