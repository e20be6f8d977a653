"""Notebook 07 (trade-off): Fig. 8 — accuracy vs speed, bubble size = parameters, for every method
measured here, from the benchmark (parameters, FLOPs, CPU latency) and Table III's IoU."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from nairstd.baselines import BASELINE_INFO
from nairstd.bench import count_flops, latency_ms
from nairstd.bench.classical import benchmark_classical
from nairstd.plots import save_figure
from nairstd.tables import write_table
from nairstd.zoo import build_model

OURS_NAME = "Na-IRSTD"


def display_name(method: str) -> str:
    return BASELINE_INFO.get(method, {"table_name": OURS_NAME})["table_name"]


def benchmark(
    deep: list[str], classical: list[str], size: str = "tiny", hw: int = 256, iters: int = 10
) -> pd.DataFrame:
    """Parameters, GFLOPs (2 x multiply-adds) and CPU latency at batch 1, hw x hw, per method."""
    torch.manual_seed(0)
    x = torch.rand(1, 1, hw, hw)
    rows = []
    for name in deep:
        model = build_model(name, size=size).eval()
        median, best = latency_ms(model, x, warmup=2, iters=iters)
        rows.append(
            {
                "method": display_name(name),
                "kind": "deep",
                "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
                "GFLOPs": count_flops(model, x) / 1e9,
                "latency_ms": median,
                "latency_min_ms": best,
                "reduced": bool(BASELINE_INFO.get(name, {}).get("reduced", False)),
            }
        )
    seconds = benchmark_classical(n=2, size=hw) if classical else {}
    for name in classical:
        rows.append(
            {
                "method": display_name(name),
                "kind": "traditional",
                "params_M": 0.0,
                "GFLOPs": np.nan,  # iterative solvers: not counted
                "latency_ms": 1000 * seconds[name],
                "latency_min_ms": np.nan,
                "reduced": False,
            }
        )
    return pd.DataFrame(rows)


def tradeoff_table(
    bench: pd.DataFrame, table3_csv: Path, dataset: str, out_dir: Path, profile: str
) -> pd.DataFrame:
    """Join the benchmark with Table III's measured IoU/Pd/Fa on `dataset`; write the table."""
    t3 = pd.read_csv(table3_csv)
    t3 = t3[t3["source"].str.startswith("measured") & (t3["dataset"] == dataset)]
    accuracy = t3.set_index("table_name")[["IoU", "Pd", "Fa"]]
    table = bench.join(accuracy, on="method")
    notes = [
        f"profile {profile}; accuracy: Table III on {dataset} test (resize256)",
        "latency: median CPU time of one 256x256 image, batch 1, after warm-up, this machine",
        "GFLOPs = 2 x multiply-adds at 256x256 (torch.utils.flop_counter, math attention); "
        "not counted for iterative classical solvers",
        "reduced = tiny width, smaller than the method's paper size",
    ]
    write_table(table, out_dir, "fig8_tradeoff", "Fig. 8 data - accuracy vs speed vs size", notes)
    return table


def figure8(table: pd.DataFrame, path: Path, dataset: str) -> Path:
    """IoU against CPU latency (log scale); bubble area proportional to parameters."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    data = table.dropna(subset=["IoU"])
    sizes = 60 + 900 * data["params_M"] / max(data["params_M"].max(), 1e-9)
    colors = [
        "tab:red" if m == OURS_NAME else "tab:blue" if k == "deep" else "tab:gray"
        for m, k in zip(data["method"], data["kind"])
    ]
    ax.scatter(data["latency_ms"], data["IoU"], s=sizes, c=colors, alpha=0.55, edgecolors="black")
    for _, row in data.iterrows():
        label = row["method"] + (" (reduced)" if row["reduced"] else "")
        ax.annotate(
            label,
            (row["latency_ms"], row["IoU"]),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=7,
        )
    ax.set_xscale("log")
    ax.set_xlabel("CPU latency per 256x256 image (ms, log scale)")
    ax.set_ylabel(f"IoU on {dataset} test (%)")
    ax.set_title(
        "Fig. 8 - accuracy vs speed (bubble area ~ parameters; red: Na-IRSTD, grey: classical)",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    top = data["IoU"].max() if len(data) else 100
    ax.set_ylim(0, max(10.0, top * 1.15))
    fig.tight_layout()
    return save_figure(fig, path)
