"""A short GPU check: `bash scripts/gpu_check.sh [--out gpu_check.json]` (or `python -m nairstd.gpu_check`).

In about 8 minutes on one GPU: a few `paper`-profile epochs of Stage 1 and then Stage 2 (base
model, batch 8, whole 256x256 images, AMP) on SIRST, then the model benchmark (detector and
na_irstd, base and tiny, batch 1 and 8: latency, images/s, peak memory). Writes one JSON with
throughput, peak memory and the per-epoch losses. A time budget (`--budget-s`) skips what would
not fit and says so in the JSON. `--device cpu` with small caps runs the same path on a CPU
(the tests do: tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from nairstd.io import write_text


def _peak_memory_mb(device: torch.device) -> float:
    """Peak allocated CUDA memory since the last reset, or the process's peak RSS on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_phase(stage: str, args: argparse.Namespace, device: torch.device, **extra: Any) -> dict:
    """Train `stage` with the paper profile capped to args' epochs/steps; timings, memory, losses."""
    import pandas as pd

    from nairstd.train import profile_config, train

    epochs = args.epochs1 if stage == "1" else args.epochs2
    cfg = profile_config(
        "paper",
        stage,
        dataset=args.dataset,
        size=args.size,
        epochs=epochs,
        epoch_steps=args.epoch_steps,
        val_limit=args.val_limit,
        val_every=epochs,  # validate once, at the end: the check times training
        batch_size=args.batch_size,
        workers=args.workers,
        device=str(device),
        image_size=args.image_size,
        **extra,
    )
    _reset_peak(device)
    t0 = time.perf_counter()
    run = train(cfg, runs_dir=args.runs_dir, data_root=args.data_root, log=lambda _: None)
    _sync(device)
    wall = time.perf_counter() - t0
    log = pd.read_csv(run.run_dir / "log.csv")
    steps = int(run.metrics.get("steps", 0))
    train_s = float(run.metrics.get("train_time_s") or wall)
    loss_cols = [c for c in log.columns if c.startswith("loss")]
    return {
        "stage": stage,
        "run_dir": str(run.run_dir),
        "epochs": int(run.metrics.get("epochs", len(log))),
        "steps": steps,
        "batch_size": cfg.batch_size,
        "amp": cfg.amp and device.type == "cuda",
        "wall_s": wall,
        "train_s": train_s,
        "train_images_per_s": steps * cfg.batch_size / train_s if train_s > 0 else None,
        "peak_memory_mb": _peak_memory_mb(device),
        "losses": {c: [float(v) for v in log[c].tolist()] for c in loss_cols},
        "val": run.metrics.get("val"),
    }


def _best_latency(model, x: torch.Tensor, args: argparse.Namespace, device) -> float:
    """Best wall time (s) of one forward over args.bench_iters, after args.bench_warmup."""
    for _ in range(args.bench_warmup):
        model(x)
    _sync(device)
    best = float("inf")
    for _ in range(args.bench_iters):
        t0 = time.perf_counter()
        model(x)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


@torch.inference_mode()
def bench_phase(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Eval latency, images/s and peak memory per (size, variant, batch): fp32 and AMP eager, and
    fp32 under torch.compile for args.compile_sizes (one compile per batch; its time recorded)."""
    from nairstd.compiling import compile_model
    from nairstd.zoo import build_model

    rows = []
    for size in args.bench_sizes:
        for name in ("detector", "na_irstd"):
            torch.manual_seed(0)
            model = build_model(name, size).to(device).eval()
            modes = [(False, False), (True, False)] if device.type == "cuda" else [(False, False)]
            if size in args.compile_sizes:
                modes.append((False, True))
                compiled = compile_model(model)
            for amp, is_compiled in modes:
                net = compiled if is_compiled else model
                for batch in args.bench_batches:
                    x = torch.randn(batch, 1, args.image_size, args.image_size, device=device)
                    _reset_peak(device)
                    row: dict[str, Any] = {"size": size, "variant": name, "batch": batch}
                    row |= {"amp": amp, "compiled": is_compiled}
                    with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                        if is_compiled:
                            t0 = time.perf_counter()
                            net(x)  # compiles for this batch size
                            _sync(device)
                            row["compile_s"] = time.perf_counter() - t0
                        best = _best_latency(net, x, args, device)
                    rows.append(
                        row
                        | {
                            "latency_ms": 1000 * best,
                            "images_per_s": batch / best,
                            "peak_memory_mb": _peak_memory_mb(device),
                        }
                    )
            del model
    return rows


def run_check(args: argparse.Namespace) -> dict:
    """All phases within args.budget_s; the JSON document."""
    from nairstd.train.checkpoint import resolve_device

    device = resolve_device(args.device)
    start = time.perf_counter()
    doc: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dataset": args.dataset,
        "model_size": args.size,
        "budget_s": args.budget_s,
        "phases": {},
        "skipped": [],
    }

    def left() -> float:
        return args.budget_s - (time.perf_counter() - start)

    s1 = train_phase("1", args, device, label="soft")
    doc["phases"]["stage1"] = s1
    # Stage 2 needs about as long as Stage 1 per epoch plus the detector: skip what cannot fit.
    if left() > 1.5 * s1["wall_s"] * max(1, args.epochs2) / max(1, args.epochs1):
        doc["phases"]["stage2"] = train_phase(
            "2", args, device, init_from=str(Path(s1["run_dir"]) / "best.pt")
        )
    else:
        doc["skipped"].append("stage2 (time budget)")
    if left() > args.bench_reserve_s:
        doc["phases"]["bench"] = bench_phase(args, device)
    else:
        doc["skipped"].append("bench (time budget)")
    doc["total_s"] = time.perf_counter() - start
    return doc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nairstd.gpu_check", description=__doc__)
    p.add_argument("--device", default="cuda", help="cuda (default), cpu, auto")
    p.add_argument("--dataset", default="SIRST", help="dataset name or folder (default SIRST)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset")
    p.add_argument("--size", default="base", help="model size for training (paper: base)")
    p.add_argument("--epochs1", type=int, default=3, help="Stage-1 epochs (default 3)")
    p.add_argument("--epochs2", type=int, default=3, help="Stage-2 epochs (default 3)")
    p.add_argument("--epoch-steps", type=int, default=None, help="cap on steps per epoch")
    p.add_argument("--val-limit", type=int, default=None, help="validate on N images only")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--bench-sizes", nargs="+", default=["base", "tiny"])
    p.add_argument("--bench-batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--bench-iters", type=int, default=20)
    p.add_argument("--bench-warmup", type=int, default=5)
    p.add_argument(
        "--compile-sizes",
        nargs="*",
        default=["tiny"],
        help="sizes also timed under torch.compile, fp32 (default tiny; none: eager only)",
    )
    p.add_argument("--bench-reserve-s", type=float, default=30.0, help="time the bench needs")
    p.add_argument("--budget-s", type=float, default=450.0, help="wall-clock budget (default 450)")
    p.add_argument("--runs-dir", default=None, help="runs folder (default: a temporary one)")
    p.add_argument("--out", default="gpu_check.json", help="JSON output (default gpu_check.json)")
    return p


def out_problem(out: Path) -> str | None:
    """Why the report cannot go to `out` (None: it can). Only a previous report of this check is
    replaced: a folder or any other file there is the user's."""
    if out.is_dir():
        return "is a folder"
    if out.exists():
        try:
            previous = json.loads(out.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        if not (isinstance(previous, dict) and "phases" in previous and "total_s" in previous):
            return "exists and is not an earlier gpu_check report; refusing to replace it"
    if not out.parent.is_dir():
        return f"its folder {out.parent} does not exist"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is visible (use --device cpu)", file=sys.stderr)
        return 2
    problem = out_problem(Path(args.out))
    if problem:  # checked before the minutes of GPU time, not after
        print(f"error: --out {args.out}: {problem}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        if args.runs_dir is None:
            args.runs_dir = tmp
        doc = run_check(args)
    text = json.dumps(doc, indent=2, default=str)
    write_text(Path(args.out), text + "\n")
    s = doc["phases"]
    for key in ("stage1", "stage2"):
        if key in s:
            r = s[key]
            print(
                f"{key}: {r['epochs']} epochs, {r['steps']} steps, "
                f"{r['train_images_per_s']:.1f} images/s, peak {r['peak_memory_mb']:.0f} MiB"
            )
    for r in s.get("bench", []):
        print(
            f"bench {r['size']} {r['variant']} batch {r['batch']} amp={r['amp']} "
            f"compiled={r['compiled']}: "
            f"{r['latency_ms']:.2f} ms, {r['images_per_s']:.1f} images/s, "
            f"peak {r['peak_memory_mb']:.0f} MiB"
        )
    if doc["skipped"]:
        print("skipped: " + ", ".join(doc["skipped"]))
    print(f"{args.out}: {doc['total_s']:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
