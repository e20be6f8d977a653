"""Benchmarks: `python -m nairstd bench model|predict|classical|synthetic ...` (also
`python -m nairstd.bench`; training throughput: `python -m nairstd reference throughput`).

`model`: parameters, FLOPs, latency and training throughput per variant (`bench.models`), or with
`--profile-ops` where the time goes (`bench.ops`); `predict`: torch eager vs compiled vs
onnxruntime detection throughput (`bench.predict`); `parity`: onnxruntime vs PyTorch on real
frames (`bench.parity`); `classical`: seconds per image of each classical method;
`synthetic`: images/s of the synthetic-data generator.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from nairstd.bench import parity as parity_module
from nairstd.bench import predict as predict_module
from nairstd.bench.models import DEFAULT_VARIANTS, bench_models, tune_malloc
from nairstd.bench.ops import format_profile, profile_ops
from nairstd.bench.predict import DEFAULT_SIZES, bench_predict, format_rows, parse_size
from nairstd.compiling import COMPILE_CHOICES
from nairstd.protocols import NATIVE, PROTOCOLS
from nairstd.zoo import list_models


def _predict(args: argparse.Namespace) -> int:
    modes = tuple(m for m in args.modes if not (m == "compiled" and args.compile == "off"))
    tune_malloc()  # as `predict` does
    rows = bench_predict(
        args.size,
        tuple(args.model),
        args.n,
        tuple(args.sizes),
        args.protocol,
        args.device,
        modes,
        not args.no_end_to_end,
    )
    print(json.dumps(rows, indent=2) if args.json else format_rows(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nairstd bench", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("model", help="parameters, FLOPs, latency, training throughput per variant")
    p.add_argument("--size", default="tiny", choices=["tiny", "base"])
    p.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help=f"default: {' '.join(DEFAULT_VARIANTS)}; 'all': every registered model (baselines too)",
    )
    p.add_argument("--hw", type=int, default=256, help="square input size (default 256)")
    p.add_argument("--batch", type=int, default=8, help="training batch (default 8)")
    p.add_argument("--iters", type=int, default=20, help="timed latency iterations")
    p.add_argument("--train-steps", type=int, default=6, help="timed training steps")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--no-malloc-tuning", action="store_true", help="keep glibc's default mmap/trim thresholds"
    )
    p.add_argument(
        "--compile",
        default="auto",
        choices=["auto", "on", "off"],
        help="auto/on (default auto): eager and torch.compile latency side by side (tens of "
        "seconds of compile per variant and batch); off: eager only",
    )
    p.add_argument(
        "--latency-batches",
        type=int,
        nargs="+",
        default=[1],
        help="eval-latency batch sizes (default 1)",
    )
    p.add_argument(
        "--profile-ops",
        action="store_true",
        help="instead of the table: where the time goes, per pipeline stage (native branch, "
        "scorer, encoder, injection, decoder) and top aten ops (torch.profiler), for "
        "detector and na_irstd (or --variants) at --latency-batches (default 1 8), eager and "
        "compiled (unless --compile off)",
    )
    q = sub.add_parser(
        "predict",
        help="torch eager vs compiled vs onnxruntime frames/s and MP/s of predict (see --help)",
        description=predict_module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("--size", default="tiny", choices=["tiny", "base"])
    q.add_argument(
        "--model",
        nargs="+",
        default=["na_irstd"],
        help="model(s) (default na_irstd; with detector too: the ratio to it under each mode)",
    )
    q.add_argument(
        "--modes",
        nargs="+",
        default=list(predict_module.MODES),
        choices=predict_module.MODES,
        help="torch eager, torch compiled, onnxruntime (one dynamic graph), onnxruntime-fixed "
        "(a fixed-size graph per input size; default: all four)",
    )
    q.add_argument("--n", type=int, default=10, help="timed rounds / images per size")
    q.add_argument(
        "--sizes",
        nargs="+",
        type=parse_size,
        default=[parse_size(s) for s in DEFAULT_SIZES],
        help="frame sizes WIDTHxHEIGHT (default 640x512 1920x1080)",
    )
    q.add_argument("--protocol", default=NATIVE, choices=PROTOCOLS)
    q.add_argument("--device", default="cpu")
    q.add_argument(
        "--compile",
        default="auto",
        choices=COMPILE_CHOICES,
        help="auto/on (default auto): compiled among the modes; off: leave it out",
    )
    q.add_argument("--no-end-to-end", action="store_true", help="forward timings only")
    q.add_argument("--json", action="store_true")
    r = sub.add_parser(
        "parity",
        help="onnxruntime vs PyTorch on a test split: probabilities and detections (see --help)",
        description=parity_module.__doc__,
    )
    r.add_argument(
        "--checkpoint",
        nargs="+",
        help="checkpoint files or run folders (default: the shipped na_irstd and detector)",
    )
    r.add_argument("--dataset", default="SIRST", help="whose test split (default SIRST)")
    r.add_argument(
        "--sizes",
        nargs="+",
        default=list(parity_module.SIZES),
        choices=list(parity_module.SIZES),
        help="native and/or rescaled frame sizes (default: all three)",
    )
    r.add_argument("--limit", type=int, help="first N test frames only")
    r.add_argument("--data-root", help="extra dataset folder(s)")
    r.add_argument("--json", action="store_true")
    s = sub.add_parser("synthetic", help="images/s of the synthetic-data generator (one core)")
    s.add_argument("--n", type=int, default=200, help="images to generate")
    c = sub.add_parser("classical", help="seconds per 256x256 image of each classical method")
    c.add_argument("--n", type=int, default=3, help="images to time per method")
    c.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if args.what == "predict":
        unknown = sorted(set(args.model) - set(list_models()))
        if unknown:
            parser.error(f"unknown models {unknown}; registered: {list_models()}")
        return _predict(args)
    if args.what == "parity":
        rows = parity_module.parity(
            args.checkpoint,
            args.dataset,
            tuple(args.sizes),
            args.limit,
            args.data_root,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
        print(json.dumps(rows, indent=2) if args.json else parity_module.format_rows(rows))
        return 0
    if args.what == "synthetic":
        from nairstd.bench.synthetic import format_rate, generator_rate

        print(format_rate(generator_rate(args.n)))
        return 0
    if args.what == "classical":
        from nairstd.bench.classical import benchmark_classical

        seconds = benchmark_classical(n=args.n, size=256)
        if args.json:
            print(json.dumps(seconds, indent=2))
        else:
            for name, value in seconds.items():
                print(f"{name:8s} {value:8.3f} s per 256x256 image")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.variants == ["all"]:
        args.variants = list_models()
    if args.variants:
        unknown = sorted(set(args.variants) - set(list_models()))
        if unknown:
            parser.error(f"unknown variants {unknown}; registered: {list_models()}")
    if args.profile_ops:
        if not args.no_malloc_tuning:
            tune_malloc()
        batches = tuple(args.latency_batches) if args.latency_batches != [1] else (1, 8)
        rows = profile_ops(
            args.size,
            tuple(args.variants or ("detector", "na_irstd")),
            batches,
            ("eager",) if args.compile == "off" else ("eager", "compiled"),
            hw=args.hw,
            reps=args.iters,
        )
        print(json.dumps(rows, indent=2) if args.json else format_profile(rows))
        return 0
    bench_models(
        args.size,
        args.variants,
        args.json,
        hw=args.hw,
        batch=args.batch,
        iters=args.iters,
        train_steps=args.train_steps,
        malloc_tuning=not args.no_malloc_tuning,
        compiled=args.compile != "off",
        latency_batches=tuple(args.latency_batches),
    )
    return 0
