"""Same-process A/B latency: eager vs torch.compile (and the pre-issue-14 reference forward).

    NAIRSTD_THREADS=1 taskset -c 1 python scripts/bench_ab.py --models detector na_irstd \
        --batches 1 8 --hw 256 256 --reps 30 [--no-compile] [--reference]

Prints best-of-N and median ms per forward for every (model, batch, mode). `--reference` adds the
old Na-IRSTD forward kept in tests/reference_na_irstd.py, run on the same weights, so before/after
figures come from one process under the same load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from nairstd.bench import tune_malloc  # noqa: E402
from nairstd.models import build_model  # noqa: E402


def timeit(fn, x, reps: int, warmup: int = 3) -> tuple[float, float]:
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn(x)
            ts.append(time.perf_counter() - t0)
    return 1000 * min(ts), 1000 * statistics.median(ts)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["detector", "na_irstd"])
    p.add_argument("--size", default="tiny")
    p.add_argument("--batches", nargs="+", type=int, default=[1])
    p.add_argument("--hw", nargs=2, type=int, default=[256, 256])
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--reference", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(int(os.environ.get("NAIRSTD_THREADS", "1")))
    tune_malloc()
    print(f"torch {torch.__version__} threads {torch.get_num_threads()} load {os.getloadavg()}")
    for name in a.models:
        torch.manual_seed(0)
        model = build_model(name, a.size).eval()
        modes = {"eager": model}
        if a.reference and name == "na_irstd":
            from reference_na_irstd import reference_forward

            modes["reference"] = lambda x, m=model: reference_forward(m, x)
        for b in a.batches:
            x = torch.randn(b, 1, *a.hw)
            for mode, fn in list(modes.items()):
                best, med = timeit(fn, x, a.reps)
                print(
                    f"{name:9s} b{b} {a.hw[0]}x{a.hw[1]} {mode:10s} best {best:8.2f} ms  median {med:8.2f} ms"
                )
            if not a.no_compile:
                t0 = time.perf_counter()
                cm = torch.compile(model)
                with torch.inference_mode():
                    cm(x)
                ct = time.perf_counter() - t0
                best, med = timeit(cm, x, a.reps)
                print(
                    f"{name:9s} b{b} {a.hw[0]}x{a.hw[1]} {'compiled':10s} best {best:8.2f} ms  median {med:8.2f} ms  (compile {ct:.0f} s)"
                )
    print(f"load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
