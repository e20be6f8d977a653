"""onnxruntime with one fixed-size graph per network input size, exported on first use.

Why: in a fixed-size graph the shape arithmetic and the positional embeddings fold into
constants, and on one CPU thread it ran 1.3-2x faster than the dynamic graph of the same model
(na_irstd at 640x512: 87 vs 125 ms, detector 52 vs 91 ms; README, Deploy). Exporting a size
costs seconds (trace + the checks of `nairstd.export`), not the minutes of `torch.compile`, so
`predict --backend onnxruntime` on a checkpoint runs this, the way the compiled torch model
builds one graph per size. Frames of one camera share one graph; a tiled frame needs one per
window shape (1920x1080 in 1024 px windows: 6). After `MAX_SIZES` sizes, further sizes run the
dynamic graph instead of exporting without end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from nairstd.export import export_metadata, export_model
from nairstd.models.traits import unwrap
from nairstd.onnx_backend import OnnxModel

MAX_SIZES = 8


class SizedOnnxModel:
    """A torch model served by onnxruntime through fixed-size exports, one per input size."""

    def __init__(
        self,
        model: nn.Module,
        ckpt: dict[str, Any] | None = None,
        device: Any = "auto",
        threads: int | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.model = unwrap(model)
        self.ckpt = {k: v for k, v in (ckpt or {}).items() if k != "state_dict"}
        self.device = device
        self.threads = threads
        self.log = log
        self.graphs: dict[tuple[int, int], OnnxModel] = {}
        self.dynamic: OnnxModel | None = None
        meta = export_metadata(self.model, self.ckpt, None)
        self.info: dict[str, Any] = {
            **self.ckpt,
            "backend": "onnxruntime",
            "model": meta["model"],
            "protocol": meta["protocol"],
            "threshold": float(meta["threshold"]),
        }

    def graph(self, hw: tuple[int, int]) -> OnnxModel:
        """The graph that runs (H, W) inputs: its own, exported now if new, or the dynamic one."""
        if hw in self.graphs:
            return self.graphs[hw]
        fixed = len(self.graphs) < MAX_SIZES
        start = time.perf_counter()
        data, _ = export_model(
            self.model,
            hw if fixed else None,
            export_metadata(self.model, self.ckpt, hw if fixed else None),
        )
        graph = OnnxModel.load(data, self.device, self.threads)
        if self.log is not None:
            what = (
                f"a {hw[1]}x{hw[0]} graph" if fixed else f"the dynamic graph (> {MAX_SIZES} sizes)"
            )
            self.log(f"onnxruntime: exported {what} ({time.perf_counter() - start:.1f} s)")
        if not fixed:
            self.dynamic = graph
            return graph
        self.graphs[hw] = graph
        return graph

    def probability(self, x: np.ndarray) -> np.ndarray:
        """(H, W) preprocessed frame -> (H, W) float32 probability."""
        hw = (int(x.shape[0]), int(x.shape[1]))
        if hw not in self.graphs and self.dynamic is not None:
            return self.dynamic.probability(x)
        return self.graph(hw).probability(x)
