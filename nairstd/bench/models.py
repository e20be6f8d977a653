"""Model benchmarks: `python -m nairstd bench model [--size tiny|base] [--variants ...] [--json]`.

For every model variant at 256 x 256: parameters, FLOPs (FlopCounterMode under the math SDPA
backend, so the attention matmuls are counted; FLOPs = 2 x multiply-adds), median CPU latency at
batch 1, Stage-2 training throughput at batch 8, and for the native-branch variants the FLOPs of
the cross-scale injection at K = top_k versus dense injection of all N patches (K = N).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from nairstd.malloc import tune_malloc  # noqa: F401  (re-exported: bench.tune_malloc)
from nairstd.models.na_irstd import NaIRSTD
from nairstd.models.scoring import k_for, select_top_k
from nairstd.zoo import build_model

DEFAULT_VARIANTS = ("detector", "detector_ds2", "dense_cnn", "na_irstd")


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
