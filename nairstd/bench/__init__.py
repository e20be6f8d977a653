"""Benchmarks (`python -m nairstd bench ...`): models, where the time goes, detection, classical
methods, the data generator.

`bench.models` (parameters, FLOPs, latency, training throughput), `bench.ops` (per-stage and
per-op profile), `bench.predict` (eager vs compiled vs onnxruntime detection throughput),
`bench.parity` (onnxruntime vs PyTorch on real frames), `bench.classical`
(seconds per image), `bench.synthetic` (generator images/s) and `bench.cli` (the command line).
"""

from nairstd.bench.cli import main
from nairstd.bench.models import (
    DEFAULT_VARIANTS,
    bench_models,
    count_flops,
    injection_flops,
    latency_ms,
    train_throughput,
    tune_malloc,
)
from nairstd.bench.ops import profile_ops
from nairstd.bench.predict import bench_predict

__all__ = [
    "DEFAULT_VARIANTS",
    "bench_models",
    "bench_predict",
    "count_flops",
    "injection_flops",
    "latency_ms",
    "main",
    "profile_ops",
    "train_throughput",
    "tune_malloc",
]
