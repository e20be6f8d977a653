"""Same-process A/B latency: eager vs torch.compile (and the pre-issue-14 reference forward).

    NAIRSTD_THREADS=1 taskset -c 1 python scripts/bench_ab.py --models detector na_irstd \
        --batches 1 8 --hw 256 256 --reps 30 [--no-compile] [--reference]

Prints best-of-N and median ms per forward for every (model, batch, mode); the modes are timed
in interleaved rounds so they share the same load. `--reference` adds the
old forward kept in tests/reference_na_irstd.py (Na-IRSTD and the detector), run on the same weights, so before/after
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
from nairstd.zoo import build_model  # noqa: E402


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
        if a.reference and name in ("na_irstd", "detector"):
            from reference_na_irstd import reference_forward

            modes["reference"] = lambda x, m=model: reference_forward(m, x)
        for b in a.batches:
            x = torch.randn(b, 1, *a.hw)
            fns = dict(modes)
            compile_s = {}
            if not a.no_compile:
                from nairstd.compiling import compile_model

                for mode, fn in modes.items():
                    label = "compiled" if mode == "eager" else f"{mode}+compile"
                    t0 = time.perf_counter()
                    cm = compile_model(fn) if mode == "eager" else torch.compile(fn, dynamic=False)
                    with torch.inference_mode():
                        cm(x)
                    compile_s[label] = time.perf_counter() - t0
                    fns[label] = cm
            # Interleaved rounds: every variant sees the same load over the run.
            times = {k: [] for k in fns}
            with torch.inference_mode():
                for fn in fns.values():
                    for _ in range(3):
                        fn(x)
                for _ in range(a.reps):
                    for k, fn in fns.items():
                        t0 = time.perf_counter()
                        fn(x)
                        times[k].append(time.perf_counter() - t0)
            for k, ts in times.items():
                extra = f"  (compile {compile_s[k]:.0f} s)" if k in compile_s else ""
                print(
                    f"{name:9s} b{b} {a.hw[0]}x{a.hw[1]} {k:18s} best {1000 * min(ts):8.2f} ms  "
                    f"median {1000 * statistics.median(ts):8.2f} ms{extra}"
                )
            print(f"  load {os.getloadavg()}")
    print(f"load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
