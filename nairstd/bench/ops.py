"""Where the time goes: `python -m nairstd bench model --profile-ops` (per pipeline stage + aten ops)."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from nairstd.models.layers import pad_to_multiple, to_memory_format
from nairstd.models.na_irstd import NaIRSTD
from nairstd.models.scoring import k_for, select_top_k
from nairstd.zoo import build_model


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
