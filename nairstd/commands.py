"""What each verb of `python -m nairstd` does (the parser and error handling are in `nairstd.cli`).

Each handler takes the parsed arguments and returns the exit status; bad input raises, and
`cli.main` turns it into one `error: ...` line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from nairstd.data.images import DataError


def data_stats(args: argparse.Namespace) -> int:
    from nairstd.data.index import discover_datasets, find_dataset
    from nairstd.data.stats import dataset_stats, format_stats

    if args.path:
        indices = [find_dataset(p, args.data_root) for p in args.path]
    else:
        indices = discover_datasets(args.data_root)
        if not indices:
            raise DataError("no dataset found in the data roots; give a PATH or set NAIRSTD_DATA")
    all_stats = [dataset_stats(index) for index in indices]
    if args.json:
        print(json.dumps(all_stats, indent=2))
    else:
        print("\n\n".join(format_stats(s) for s in all_stats))
    return 0


def data_synth(args: argparse.Namespace) -> int:
    from nairstd.data.synthetic import PRESETS, preset, write_dataset
    from nairstd.paths import generated_data_root

    out_root = Path(args.out) if args.out else generated_data_root()
    for name in args.name or list(PRESETS):
        path = write_dataset(out_root, name, preset(name, args.profile))
        print(f"{name}: {path}")
    return 0


def data_clutter(args: argparse.Namespace) -> int:
    """Write the clutter sets of the OOD check (as many frames as the profile's check scores)."""
    from nairstd.data.synthetic.clutter import CLUTTER_PRESETS
    from nairstd.data.synthetic.writer import write_clutter_set
    from nairstd.ood import frame_counts
    from nairstd.paths import generated_data_root

    out_root = Path(args.out) if args.out else generated_data_root() / "ood"
    counts = frame_counts(args.profile)
    for name in args.name or list(CLUTTER_PRESETS):
        if name not in CLUTTER_PRESETS:
            raise ValueError(f"unknown clutter set {name!r}; choose from {sorted(CLUTTER_PRESETS)}")
        n = args.frames if args.frames is not None else counts.get(name) or 0
        if n < 1:
            raise ValueError(
                f"--frames must be >= 1 (profile {args.profile} scores none of {name})"
            )
        path = write_clutter_set(out_root, name, n)
        print(f"{name}: {n} frames in {path}")
    return 0


def data_hard(args: argparse.Namespace) -> int:
    from nairstd.data.hard import build_irstd_hard
    from nairstd.data.index import find_dataset
    from nairstd.paths import generated_data_root

    sources = [find_dataset(s, args.data_root) for s in args.sources]
    out_root = Path(args.out) if args.out else generated_data_root()
    hard = build_irstd_hard(sources, out_root)
    print(f"{hard.name}: {len(hard.split('test'))} test images in {hard.root}")
    return 0


def score(args: argparse.Namespace) -> int:
    from nairstd.data.index import _read_list as read_list
    from nairstd.data.index import find_dataset
    from nairstd.metrics import format_metrics
    from nairstd.score import score_folder

    index = find_dataset(args.data, args.data_root)
    if args.list:
        list_file = Path(args.list)
        if not list_file.is_file():
            raise DataError(f"{list_file}: list file not found")
        stems = read_list(list_file)
        source = list_file
    else:
        stems = index.split(args.split)
        source = index.root
    if not stems:
        raise DataError(f"{source}: split {args.split!r} is empty")
    repeated = sorted(stem for stem, n in Counter(stems).items() if n > 1)
    if repeated:
        raise DataError(
            f"{source}: {len(repeated)} image(s) listed more than once, e.g. {repeated[0]}"
        )
    if args.sweep:
        from nairstd.sweep import sweep_folder

        rows = sweep_folder(
            args.pred, index, stems, args.sweep, protocol=args.protocol, list_file=args.list
        )
        for r in rows:
            print(
                f"threshold {r['threshold']:.2f}: Pd {r['Pd']:.2f} | Fa {r['Fa']:.2f} | "
                f"false targets per frame {r['fa_per_frame']:.3f}"
            )
        print(f"-> {args.sweep} and {Path(args.sweep).with_suffix('.png')}")
        return 0
    result = score_folder(args.pred, index, stems, protocol=args.protocol, threshold=args.threshold)
    if args.json:
        print(json.dumps(_json_safe(result), indent=2, allow_nan=False))
    else:
        print(
            f"{index.name} ({len(stems)} images, protocol {args.protocol}): {format_metrics(result)}"
        )
    return 0


def profiles(args: argparse.Namespace) -> int:
    import dataclasses

    from nairstd.profiles import DEFAULT_PROFILE, PROFILES, get_profile

    if args.default:
        print(DEFAULT_PROFILE)
    elif args.show:
        print(json.dumps(dataclasses.asdict(get_profile(args.show)), indent=2))
    else:
        print("\n".join(PROFILES))
    return 0


def _reference_plan(args: argparse.Namespace) -> dict:
    return dict(
        claims=args.claims, seeds=args.seeds, doubled=not args.no_doubled, datasets=args.datasets
    )


def reference_run(args: argparse.Namespace) -> int:
    from nairstd.reproduce.reference import run_reference

    lines = run_reference(
        workers=args.workers,
        device=args.device,
        root=args.results,
        data_root=args.data_root,
        limit=args.limit,
        **_reference_plan(args),
    )
    return 1 if any(": FAILED: " in line for line in lines) else 0


def reference_status(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nairstd.reproduce.reference import load_bundle, plan_units, stale_fields

    root = Path(args.results) if args.results else None
    for unit in plan_units(**_reference_plan(args)):
        folder = unit.folder(root)
        if not (folder / "bundle.json").is_file():
            print(f"pending  {unit.name}")
            continue
        bundle = load_bundle(folder)
        stale = stale_fields(bundle)
        state = f"STALE ({', '.join(stale)})" if stale else "done   "
        minutes = sum(t or 0 for t in bundle["train_time_s"]) / 60
        print(f"{state} {unit.name}  {bundle['commit']}  {minutes:.0f} min")
    return 0


def reference_throughput(args: argparse.Namespace) -> int:
    from nairstd.reproduce import throughput

    rows_known = [*throughput.ARM_STAGES, *throughput.BASELINES]
    names = args.models or rows_known
    unknown = sorted(set(names) - set(rows_known))
    if unknown:
        raise ValueError(f"unknown rows {unknown}; choose from {', '.join(rows_known)}")
    rows = throughput.bench_train(
        names, args.dataset, args.steps, args.warmup, args.malloc, args.repeats, args.data_root
    )
    print(json.dumps(rows, indent=2) if args.json else throughput.format_table(rows))
    return 0


def bench(args: argparse.Namespace) -> int:
    from nairstd import bench

    return bench.main(args.rest) or 0


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _json_safe(obj):
    """NaN/inf become null so the JSON is strict."""
    import math

    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def train(args: argparse.Namespace) -> int:
    from nairstd.train import profile_config, train
    from nairstd.train.stages import check_options_apply

    overrides = None
    if args.model_args:
        try:
            overrides = json.loads(args.model_args)
        except json.JSONDecodeError as err:
            raise ValueError(f"--model-args: not valid JSON ({err})") from None
        if not isinstance(overrides, dict):
            raise ValueError(f"--model-args: expected a JSON object, got {args.model_args!r}")
    try:
        config = profile_config(
            args.profile,
            args.stage,
            model=args.model,
            size=args.size,
            dataset=args.dataset,
            label=args.label,
            init_from=args.init,
            epochs=args.epochs,
            batch_size=args.batch_size,
            crop_size=args.crop,
            image_size=args.image_size,
            protocol=args.protocol,
            max_steps=args.max_steps,
            top_k=args.top_k,
            seed=args.seed,
            loss=args.loss,
            optim=args.optim,
            lr_gamma=args.lr_gamma,
            scale_min=args.scale[0] if args.scale else None,
            scale_max=args.scale[1] if args.scale else None,
            background_p=args.background_p,
            clutter_p=args.clutter_p,
            fa_weight=args.fa_weight,
            frame_stats=True if args.frame_stats else None,
            target_crop_p=args.target_crop_p,
            device=args.device,
            workers=args.workers,
            amp=False if args.no_amp else None,
            model_overrides=overrides,
        )
        given = {"lr_gamma": args.lr_gamma, "image_size": args.image_size}
        check_options_apply(config, {name for name, value in given.items() if value is not None})
        result = train(
            config,
            runs_dir=args.out,
            data_root=args.data_root,
            progress=False if args.no_progress else None,
            auto_stage1=not args.no_auto_stage1,
        )
    finally:
        from nairstd.train.ddp import shutdown

        shutdown()  # torchrun: leave the process group
    if not _is_main_process():
        return 0
    state = "reused finished run" if result.reused else "finished"
    print(f"{state}: {result.run_dir}")
    val = result.metrics.get("val") or {}
    if args.json:
        print(json.dumps(_json_safe({"run_dir": str(result.run_dir), **result.metrics}), indent=2))
    elif "IoU" in val:
        from nairstd.metrics import format_metrics

        print(f"best epoch {result.metrics.get('best_epoch')} (val): {format_metrics(val)}")
    elif "coverage" in val:
        print(
            f"best epoch {result.metrics.get('best_epoch')} (val): Top-K coverage "
            f"{val['coverage']:.2f} | precision {val['precision']:.2f}"
        )
    return 0


# How `eval` names where its protocol and threshold came from (evaluate_checkpoint's
# protocol_source, threshold_source).
PROTOCOL_SOURCES = {
    "option": "",
    "checkpoint": ", recorded in the checkpoint",
    "default": ", the default: nothing recorded",
}


def evaluate(args: argparse.Namespace) -> int:
    from nairstd.bench import tune_malloc
    from nairstd.metrics import format_metrics
    from nairstd.operating import operating_point
    from nairstd.protocols import RESIZE256
    from nairstd.train import evaluate_checkpoint
    from nairstd.train.evaluate import evaluate_classical
    from nairstd.zoo import classical_method

    tune_malloc()  # native-resolution activations: keep freed blocks instead of page-faulting
    if classical_method(args.checkpoint) is not None:
        if args.reject_structures == "on":
            raise ValueError("--reject-structures on: eval applies it to checkpoints only")
        protocol = args.protocol or RESIZE256  # a training-free method records nothing
        _, threshold = operating_point(None, protocol, args.threshold)  # validates the option
        result = evaluate_classical(
            args.checkpoint, args.dataset, args.split, protocol, args.limit, args.data_root,
            threshold=threshold,
        )  # fmt: skip
        result["protocol_source"] = "option" if args.protocol else "default"
        result["threshold_source"] = "option" if args.threshold is not None else "default"
    else:
        result = evaluate_checkpoint(
            args.checkpoint,
            args.dataset,
            split=args.split,
            protocol=args.protocol,
            threshold=args.threshold,
            batch_size=args.batch_size,
            device=args.device,
            limit=args.limit,
            data_root=args.data_root,
            compile_mode=args.compile,
            reject_structures=args.reject_structures,
        )
    if args.json:
        print(json.dumps(_json_safe(result), indent=2))
        return 0
    why = PROTOCOL_SOURCES[result["protocol_source"]]
    why_threshold = PROTOCOL_SOURCES[result["threshold_source"]]
    print(
        f"{result['dataset']} {result['split']} ({result['n_images']} images, protocol "
        f"{result['protocol']}{why}; threshold {result['threshold']:g}{why_threshold}): "
        f"{format_metrics(result)}"
    )
    if result.get("reject_structures"):
        test = result["reject_structures"]
        print(
            f"structure ends rejected before scoring (isolation test alpha {test['alpha']:g}, "
            f"window {test['window']} px, area {test['area_max']} px), as predict does"
        )
    if "coverage" in result:
        print(
            f"Top-K (K={result['top_k']}): coverage {result['coverage']:.2f} | "
            f"precision {result['precision']:.2f}"
        )
    return 0


def predict(args: argparse.Namespace) -> int:
    from nairstd.bench import tune_malloc
    from nairstd.predict import predict_files

    tune_malloc()  # native-resolution activations: keep freed blocks instead of page-faulting
    result = predict_files(
        args.checkpoint,
        args.input,
        args.output,
        protocol=args.protocol,
        device=args.device,
        tile=args.tile,
        compile_mode=args.compile,
        threshold=args.threshold,
        backend=args.backend,
        reject_structures=args.reject_structures,
    )
    n = len(result.written)
    print(
        f"{n} image(s) -> {result.output_dir} ({len(result.detections)} targets, "
        f"detections.csv; {result.seconds:.1f} s)"
    )
    if result.failures:
        print(f"{len(result.failures)} input(s) failed:", file=sys.stderr)
        for name, _ in result.failures:
            print(f"  {name}", file=sys.stderr)
        return 1
    return 0


def calibrate(args: argparse.Namespace) -> int:
    """Set a checkpoint's threshold on the user's target-free frames (nairstd.calibrate)."""
    from nairstd.bench import tune_malloc
    from nairstd.calibrate import calibrate as run

    tune_malloc()  # native-resolution activations: keep freed blocks instead of page-faulting
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if args.finetune:
        from nairstd.finetune import DEFAULT_REPLAY, DEFAULT_STEPS, calibrate_finetune

        if args.reject_structures != "auto":
            raise ValueError(
                "--reject-structures applies to calibrate without --finetune (the fine-tune "
                "mines the false targets the model raises, structure ends included)"
            )

        result = calibrate_finetune(
            args.checkpoint,
            args.background,
            args.out,
            args.max_false_per_frame,
            protocol=args.protocol,
            tile=args.tile,
            holdout=args.holdout,
            seed=args.seed,
            device=args.device,
            steps=args.finetune_steps or DEFAULT_STEPS,
            replay=args.replay or DEFAULT_REPLAY,
            log=log,
        )
    else:
        for given, name in ((args.finetune_steps, "--finetune-steps"), (args.replay, "--replay")):
            if given is not None:
                raise ValueError(f"{name} applies to the fine-tune only: add --finetune")
        result = run(
            args.checkpoint,
            args.background,
            args.out,
            args.max_false_per_frame,
            protocol=args.protocol,
            tile=args.tile,
            holdout=args.holdout or 0.0,
            seed=args.seed,
            device=args.device,
            log=log,
            reject_structures=args.reject_structures,
        )
    for line in result.warnings:
        print(f"warning: {line}", file=sys.stderr)
    cal = result.calibration
    if args.json:
        print(json.dumps(_json_safe(cal), indent=2))
        return 0
    before = [r for r in cal["curve"] if r["threshold"] == cal["source_threshold"]]
    was = (
        f"; at the checkpoint's own threshold {cal['source_threshold']}: "
        f"{before[0]['false_per_frame']:.3f}"
        if before
        else ""
    )
    if cal.get("reject_structures"):
        test = cal["reject_structures"]
        print(
            f"structure ends rejected (isolation test alpha {test['alpha']:g}, window "
            f"{test['window']} px, area {test['area_max']} px), as predict will with this copy"
        )
    print(
        f"{cal['frames']} target-free frames (protocol {cal['protocol']}, tile {cal['tile']}): "
        f"threshold {result.threshold} keeps {cal['false_per_frame']:.3f} false targets per "
        f"frame (budget {cal['max_false_per_frame']}){was}"
    )
    held = cal["holdout"]
    if held:
        print(
            f"held out {held['frames']} frames (seed {held['seed']}): "
            f"{held['false_per_frame']:.3f} false targets per frame at {result.threshold}"
        )
    if cal.get("finetune"):
        _print_finetune(cal["finetune"], result.threshold)
    worst = cal["most_false_targets"]
    if worst:
        listed = ", ".join(f"{w['frame']} {w['false_targets']}" for w in worst)
        print(f"most false targets at {result.threshold}: {listed}")
    for note in result.notes:
        print(note)
    print(f"-> {result.out} (from {cal['source_checkpoint']}, sha256 {cal['source_sha256'][:12]})")
    return 0


def _print_finetune(ft: dict, threshold: float) -> None:
    """The fine-tune's evidence, before vs after (nairstd.finetune)."""
    before, after = ft["before"], ft["after"]
    print(
        f"fine-tuned {ft['steps']} steps ({ft['seconds']:.0f} s; lr x{ft['lr_scale']} of "
        f"training's): {ft['hard_negatives']} crops on false targets above "
        f"{ft['hard_threshold']} in {ft['frames_with_false_targets']} of {len(ft['frames'])} "
        f"frames + {ft['random_crops']} random crops, {ft['replay']['dataset']} train replayed; "
        f"loss {ft['loss_first_tenth']:.4f} -> {ft['loss_last_tenth']:.4f}"
    )
    print(
        f"held-out {len(ft['heldout_frames'])} frames at {threshold}: "
        f"{before['heldout_false_per_frame']:.3f} false targets per frame before the fine-tune, "
        f"{after['heldout_false_per_frame']:.3f} after"
    )
    name, n = ft["replay"]["dataset"], ft["replay"]["val_images"]
    vb, va = before["val"], after["val"]
    print(
        f"{name} val ({n} images) at {threshold}: Pd {vb['Pd']:.1f} % before, {va['Pd']:.1f} % "
        f"after; IoU {vb['IoU']:.1f} -> {va['IoU']:.1f}"
    )
    if before["threshold_alone"] is None:
        print("calibration alone (no fine-tune): no threshold met the budget")
    else:
        alone = before["val_alone"]
        print(
            f"calibration alone (no fine-tune) would choose {before['threshold_alone']}: held out "
            f"{before['heldout_false_per_frame_alone']:.3f} false targets per frame, {name} val "
            f"Pd {alone['Pd']:.1f} %"
        )


def export(args: argparse.Namespace) -> int:
    """Export a checkpoint to ONNX (nairstd.export), checked before it is written."""
    from nairstd.export import export_checkpoint

    report = export_checkpoint(args.checkpoint, args.out, args.size, args.format)
    meta = report["metadata"]
    checks = ", ".join(f"{r['size']} {r['max_abs_diff']:.1e}" for r in report["verified"])
    print(
        f"{meta['model']} ({meta['size']}) -> {report['path']}: ONNX opset {meta['opset']}, "
        f"input {report['input']}, {report['nodes']} nodes, {report['bytes'] / 1e6:.1f} MB; "
        f"protocol {meta['protocol']}, threshold {meta['threshold']}; onnx.checker passed; "
        f"onnxruntime vs PyTorch max abs difference {checks} ({report['seconds']:.1f} s)"
    )
    return 0


def ood(args: argparse.Namespace) -> int:
    """The out-of-distribution check (nairstd.ood) of one model."""
    import math

    from nairstd.data import find_dataset
    from nairstd.isolation import structure_test
    from nairstd.ood import ood_check
    from nairstd.operating import default_checkpoint, operating_point
    from nairstd.train.checkpoint import load_model
    from nairstd.train.config import cpu_threads

    model, ckpt = load_model(args.checkpoint or default_checkpoint())
    protocol, threshold = operating_point(ckpt, args.protocol, args.threshold)
    structures = structure_test(args.reject_structures, ckpt)
    with cpu_threads(1):
        rows = ood_check(
            model,
            find_dataset(args.dataset, args.data_root),
            args.profile,
            threshold,
            protocol,
            ckpt.get("preprocessing"),
            structures=structures,
        )
    if args.json:
        clean = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in rows
        ]
        rejecting = structures.to_dict() if structures else None
        print(
            json.dumps(
                {
                    "protocol": protocol,
                    "threshold": threshold,
                    "reject_structures": rejecting,
                    "rows": clean,
                }
            )
        )
        return 0
    print(f"{ckpt['path']}: protocol {protocol}, threshold {threshold}")
    if structures is not None:
        print(f"rejecting structure ends: isolation test {structures.describe()}")
    for r in rows:
        line = (
            f"{r['set']:>25} {r['size']:>9} {r['frames']:>4} frames: Pd {r['Pd']:6.2f} | "
            f"Fa {r['Fa']:8.2f} | false targets per frame {r['fa_per_frame']:.3f}"
        )
        if r["false_area_median"] is not None:
            line += (
                f" (in {r['frames_with_false']:.0%} of frames; median area "
                f"{r['false_area_median']:g} px, median peak {r['false_peak_median']:.2f})"
            )
        print(line)
    return 0


def import_weights(args: argparse.Namespace) -> int:
    from nairstd.weights import import_weights

    ckpt = import_weights(args.method, args.path, args.out, args.source, args.licence)
    info, prep = ckpt["imported"], ckpt["preprocessing"]
    print(
        f"{info['file']} ({info['tensors']} tensors, sha256 {info['sha256'][:12]}) -> {args.out}: "
        f"{ckpt['model']} {ckpt['size']}; input: {prep['description']}; "
        f"source {info['source']}; licence {info['licence']}"
    )
    return 0
