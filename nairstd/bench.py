"""Benchmarks: `python -m nairstd.bench model [--size tiny|base] [--variants ...] [--json]`.

For every model variant at 256 x 256: parameters, FLOPs (FlopCounterMode under the math SDPA
backend, so the attention matmuls are counted; FLOPs = 2 x multiply-adds), median CPU latency at
batch 1, Stage-2 training throughput at batch 8, and for the native-branch variants the FLOPs of
the cross-scale injection at K = top_k versus dense injection of all N patches (K = N).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from nairstd.models.layers import pad_to_multiple, to_memory_format
from nairstd.models.na_irstd import NaIRSTD
from nairstd.models.scoring import k_for, select_top_k
from nairstd.zoo import build_model, list_models

DEFAULT_VARIANTS = ("detector", "detector_ds2", "dense_cnn", "na_irstd")


def tune_malloc() -> bool:
    """Raise glibc's mmap / trim thresholds to 64 / 128 MiB for this process.

    By default glibc returns every freed block above ~128 KiB-32 MiB to the OS and page-faults it
    back on the next allocation; at native resolution every activation is such a block, and the
    page faults cost more than the convolutions (measured: na_irstd tiny native branch 7.7 ms ->
    3.5 ms at batch 1). Returns False where glibc is not available.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = libc.mallopt(m_mmap_threshold, 64 << 20) == 1
    return ok and libc.mallopt(m_trim_threshold, 128 << 20) == 1


def count_flops(fn, *args: Any) -> int:
    """Total FLOPs of fn(*args) (2 x multiply-adds), attention counted via the math SDPA backend.

    Runs with autograd enabled (forward only is counted): FlopCounterMode's module tracker trips
    over views of parameters made under no_grad in this torch version.
    """
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        fn(*args)
    return int(fc.get_total_flops())


def injection_flops(model: NaIRSTD, x: torch.Tensor) -> tuple[int, int, int, int]:
    """(FLOPs at K = top_k, FLOPs with all N patches injected, K, N) for one image."""
    model.eval()
    with torch.no_grad():
        xp = model._pad(x)
        feats_na, patch_logits, grid = model._score(xp)
        feats_bb, _ = model.detector.encode(xp)
        n = patch_logits.shape[1]
        k = k_for(n, model.top_k)
        sel_k = select_top_k(patch_logits, k)
        sel_all = torch.arange(n).unsqueeze(0).expand(x.shape[0], -1)
    f_k = count_flops(model.injection, feats_bb, feats_na, sel_k, grid)
    f_all = count_flops(model.injection, feats_bb, feats_na, sel_all, grid)
    return f_k, f_all, k, n


@torch.no_grad()
def latency_ms(
    model: nn.Module, x: torch.Tensor, warmup: int = 5, iters: int = 20
) -> tuple[float, float]:
    """(median, min) eval latency in ms. The min is the better estimate on a shared machine."""
    model.eval()
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times), 1000 * min(times)


def train_throughput(
    model: nn.Module, batch: int = 8, hw: int = 256, warmup: int = 2, steps: int = 6
) -> float:
    """Images/s of Stage-2 training steps (forward + BCE + Dice + backward + Adam step)."""
    model.train()
    if isinstance(model, NaIRSTD):
        model.freeze_scorer(True)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, hw, hw, generator=g)
    y = (torch.rand(batch, 1, hw, hw, generator=g) > 0.995).float()

    def step() -> None:
        logits = model(x)
        p = logits.sigmoid()
        dice = 1 - (2 * (p * y).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + y.sum((1, 2, 3)) + 1)
        loss = F.binary_cross_entropy_with_logits(logits, y) + dice.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def bench_models(
    size: str = "tiny",
    variants: list[str] | tuple[str, ...] | None = None,
    as_json: bool = False,
    *,
    hw: int = 256,
    batch: int = 8,
    warmup: int = 5,
    iters: int = 20,
    train_steps: int = 6,
    malloc_tuning: bool = True,
    verbose: bool = True,
    compiled: bool = False,
    latency_batches: tuple[int, ...] = (1,),
) -> list[dict[str, Any]]:
    """Benchmark each variant; print a table (or JSON with as_json) unless verbose=False; return rows.

    malloc_tuning applies `tune_malloc()` first (process-wide, cannot be undone). compiled adds the
    torch.compile latency (and its compile time) beside the eager one, measured in this process.
    latency_batches: batch sizes of the eval latency (one row per variant and batch).
    """
    variants = list(variants or DEFAULT_VARIANTS)
    tuned = tune_malloc() if malloc_tuning else False
    torch.manual_seed(0)
    x = torch.rand(1, 1, hw, hw)
    rows = []
    for name, lb in [(v, b) for v in variants for b in latency_batches]:
        first = lb == latency_batches[0]  # FLOPs, training and injection once per variant
        model = build_model(name, size=size)
        model.eval()
        xb = torch.rand(lb, 1, hw, hw)
        lat_median, lat_min = latency_ms(model, xb, warmup, iters)
        row: dict[str, Any] = {
            "variant": name,
            "size": size,
            "batch": lb,
            "threads": torch.get_num_threads(),
            "load_1min": os.getloadavg()[0],
            "malloc_tuned": tuned,
            "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
            "gflops": count_flops(model, x) / 1e9 if first else None,
            "latency_ms": lat_median,
            "latency_min_ms": lat_min,
            "train_img_s": train_throughput(model, batch, hw, steps=train_steps) if first else None,
            "inject_k": None,
            "inject_gflops_k": None,
            "inject_gflops_dense": None,
            "inject_ratio": None,
            "compiled_ms": None,
            "compiled_min_ms": None,
            "compile_s": None,
            "compiled_speedup": None,
        }
        if compiled:
            from nairstd.compiling import compile_model

            cm = compile_model(model)
            t0 = time.perf_counter()
            with torch.inference_mode():
                cm(xb)
            row["compile_s"] = time.perf_counter() - t0
            row["compiled_ms"], row["compiled_min_ms"] = latency_ms(cm, xb, warmup, iters)
            row["compiled_speedup"] = row["latency_min_ms"] / row["compiled_min_ms"]
        if isinstance(model, NaIRSTD) and first:
            f_k, f_all, k, n = injection_flops(model, x)
            row.update(
                inject_k=f"{k}/{n}",
                inject_gflops_k=f_k / 1e9,
                inject_gflops_dense=f_all / 1e9,
                inject_ratio=f_all / max(f_k, 1),
            )
        rows.append(row)
    if verbose:
        print(json.dumps(rows, indent=2) if as_json else format_table(rows, hw, batch))
    return rows


def _stages(model: nn.Module, x: torch.Tensor) -> list[tuple[str, Any, tuple]]:
    """(name, fn, args) for each pipeline stage of a detector or Na-IRSTD forward, inputs ready."""
    with torch.inference_mode():
        if isinstance(model, NaIRSTD):
            xp = model._pad(x)
            feats_na, tokens, grid = model.native(xp)
            logits = model.scorer(tokens)
            sel = select_top_k(logits, k_for(logits.shape[1], model.top_k))
            feats_bb, skip = model.detector.encode(xp)
            fused = model.injection(feats_bb, feats_na, sel, grid)

            def score_topk(t: torch.Tensor) -> torch.Tensor:
                s = model.scorer(t)
                return select_top_k(s, k_for(s.shape[1], model.top_k))

            return [
                ("native branch (PDE+GPM)", model.native, (xp,)),
                ("scorer + Top-K", score_topk, (tokens,)),
                ("detector encoder", model.detector.encode, (xp,)),
                (
                    "injection",
                    lambda a, b, c: model.injection(a, b, c, grid),
                    (feats_bb, feats_na, sel),
                ),
                ("detector decoder", model.detector.decode, (fused, skip, xp)),
            ]
        cfg = model.config
        xp = to_memory_format(
            pad_to_multiple(x, model.pad_multiple, cfg.pad_mode), cfg.channels_last
        )
        feats_bb, skip = model.encode(xp)
        return [
            ("detector encoder", model.encode, (xp,)),
            ("detector decoder", model.decode, (feats_bb, skip, xp)),
        ]


@torch.inference_mode()
def _best_ms(fn, args: tuple, reps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn(*args)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return 1000 * best


def profile_ops(
    size: str = "tiny",
    variants: tuple[str, ...] = ("detector", "na_irstd"),
    batches: tuple[int, ...] = (1, 8),
    modes: tuple[str, ...] = ("eager", "compiled"),
    hw: int = 256,
    reps: int = 10,
    top: int = 8,
) -> list[dict[str, Any]]:
    """Where the time goes: best-of-`reps` ms per pipeline stage (each stage timed alone on its
    real inputs; compiled = each stage compiled on its own, so fusion across stages is lost) and
    the whole forward, plus the `top` aten ops by self CPU time (torch.profiler, eager)."""
    from torch.profiler import ProfilerActivity, profile

    from nairstd.compiling import compile_model

    rows: list[dict[str, Any]] = []
    for name in variants:
        torch.manual_seed(0)
        model = build_model(name, size=size).eval()
        for b in batches:
            x = torch.randn(b, 1, hw, hw)
            for mode in modes:
                wrap = compile_model if mode == "compiled" else (lambda f: f)
                stages = [(s, wrap(f), a) for s, f, a in _stages(model, x)]
                row: dict[str, Any] = {"variant": name, "batch": b, "mode": mode, "stages_ms": {}}
                for s, f, a in stages:
                    row["stages_ms"][s] = _best_ms(f, a, reps)
                row["forward_ms"] = _best_ms(wrap(model), (x,), reps)
                if mode == "eager":
                    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
                        model(x)
                    events = sorted(
                        prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True
                    )
                    row["top_ops_ms"] = {e.key: e.self_cpu_time_total / 1000 for e in events[:top]}
                rows.append(row)
    return rows


def format_profile(rows: list[dict[str, Any]]) -> str:
    """Per-stage table of `profile_ops` rows, plus the top ops of each eager run."""
    lines = [
        f"Per-stage latency (best ms), CPU threads={torch.get_num_threads()}, "
        f"torch {torch.__version__}; compiled stages are compiled one by one"
    ]
    for r in rows:
        total = sum(r["stages_ms"].values())
        lines.append(
            f"{r['variant']} batch {r['batch']} {r['mode']}: forward {r['forward_ms']:.2f} ms "
            f"(stages sum {total:.2f} ms)"
        )
        for s, ms in r["stages_ms"].items():
            lines.append(f"    {s:26s} {ms:9.2f} ms  {100 * ms / max(total, 1e-9):5.1f}%")
        for op, ms in r.get("top_ops_ms", {}).items():
            lines.append(f"      op {op:32s} {ms:9.2f} ms (profiled run)")
    by = {(r["variant"], r["batch"], r["mode"]): r["forward_ms"] for r in rows}
    for (v, b, m), ms in by.items():
        if v == "na_irstd" and ("detector", b, m) in by:
            lines.append(f"na_irstd / detector, batch {b}, {m}: {ms / by[('detector', b, m)]:.2f}x")
    return "\n".join(lines)


def format_table(rows: list[dict[str, Any]], hw: int = 256, batch: int = 8) -> str:
    """Readable aligned table of `bench_models` rows."""
    tuned = bool(rows) and rows[0].get("malloc_tuned")
    head = [
        f"Model benchmark at {hw}x{hw}, CPU threads={torch.get_num_threads()}, "
        f"torch {torch.__version__}, glibc malloc tuned: {'yes' if tuned else 'no'}",
        "FLOPs = 2 x multiply-adds (torch FlopCounterMode, math SDPA backend); latency: eval, "
        "median and min (ms), eager and torch.compile in this process (speedup = eager min / "
        f"compiled min); train: Stage-2 step (fwd + bwd + Adam), batch {batch}; "
        f"load {rows[0].get('load_1min', float('nan')) if rows else float('nan'):.2f}",
    ]
    cols = [
        ("variant", "{}"),
        ("size", "{}"),
        ("batch", "{}"),
        ("params_M", "{:.3f}"),
        ("gflops", "{:.3f}"),
        ("latency_ms", "{:.1f}"),
        ("latency_min_ms", "{:.1f}"),
        ("compiled_ms", "{:.1f}"),
        ("compiled_min_ms", "{:.1f}"),
        ("compiled_speedup", "{:.2f}"),
        ("compile_s", "{:.0f}"),
        ("train_img_s", "{:.1f}"),
        ("inject_k", "{}"),
        ("inject_gflops_k", "{:.4f}"),
        ("inject_gflops_dense", "{:.4f}"),
        ("inject_ratio", "{:.1f}"),
    ]
    cells = [[c for c, _ in cols]]
    for r in rows:
        cells.append(["-" if r.get(c) is None else fmt.format(r[c]) for c, fmt in cols])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    by = {(r["variant"], r.get("batch", 1)): r for r in rows}
    for (v, b), na in by.items():
        det = by.get(("detector", b))
        if v != "na_irstd" or det is None:
            continue
        line = (
            f"na_irstd / detector latency, batch {b}: eager {na['latency_ms'] / det['latency_ms']:.2f}x "
            f"(median), {na['latency_min_ms'] / det['latency_min_ms']:.2f}x (min)"
        )
        if na.get("compiled_min_ms") and det.get("compiled_min_ms"):
            line += f"; compiled {na['compiled_min_ms'] / det['compiled_min_ms']:.2f}x (min)"
        if na.get("gflops") and det.get("gflops"):
            line += f"; FLOPs {na['gflops'] / det['gflops']:.2f}x"
        lines.append(line)
    return "\n".join(head + lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nairstd.bench", description=__doc__.splitlines()[0]
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
    sub.add_parser("predict", help="eager vs compiled frames/s and MP/s of predict (see --help)")
    c = sub.add_parser("classical", help="seconds per 256x256 image of each classical method")
    c.add_argument("--n", type=int, default=3, help="images to time per method")
    c.add_argument("--json", action="store_true", help="print JSON")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "predict":  # its own options live in nairstd.train.bench_predict
        from nairstd.train.bench_predict import main as bench_predict_main

        return bench_predict_main(argv[1:])
    args = parser.parse_args(argv)
    if args.what == "classical":
        from nairstd.baselines import benchmark_classical

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


if __name__ == "__main__":
    raise SystemExit(main())
