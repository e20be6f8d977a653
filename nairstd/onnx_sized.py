"""onnxruntime with one fixed-size graph per network input size that repeats.

Why: in a fixed-size graph the shape arithmetic and the positional embeddings fold into
constants, and on one CPU thread it ran faster than the dynamic graph of the same model
(na_irstd at 640x512: 87 vs 125 ms best of 15, detector 52 vs 91 ms; README, Deploy).
Exporting a size costs seconds (trace + the checks of `nairstd.export`: 2-7 s for na_irstd),
not the minutes of `torch.compile`, so `predict --backend onnxruntime` on a checkpoint runs
this, the way the compiled torch model builds one graph per size. A size seen once runs the
dynamic graph (a folder of frames of all sizes pays one export); the `FIXED_AFTER`-th frame of
a size gets its own graph (frames of one camera share it; a tiled frame needs one per window
shape: 1920x1080 in 1024 px windows has 6). At most `MAX_SIZES` fixed graphs are made.
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
FIXED_AFTER = 2  # the frame of a size that gets a fixed-size graph (earlier ones: dynamic)


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
        self.seen: dict[tuple[int, int], int] = {}
        self.dynamic: OnnxModel | None = None
        meta = export_metadata(self.model, self.ckpt, None)
        self.info: dict[str, Any] = {
            **self.ckpt,
            "backend": "onnxruntime",
            "model": meta["model"],
            "protocol": meta["protocol"],
            "threshold": float(meta["threshold"]),
        }

    def _export(self, hw: tuple[int, int] | None) -> OnnxModel:
        start = time.perf_counter()
        data, _ = export_model(self.model, hw, export_metadata(self.model, self.ckpt, hw))
        graph = OnnxModel.load(data, self.device, self.threads)
        if self.log is not None:
            what = "the dynamic graph" if hw is None else f"a {hw[1]}x{hw[0]} graph"
            self.log(f"onnxruntime: exported {what} ({time.perf_counter() - start:.1f} s)")
        return graph

    def graph(self, hw: tuple[int, int]) -> OnnxModel:
        """The graph that runs this (H, W) input: its own fixed-size one (exported now when
        this is the FIXED_AFTER-th input of that size), else the dynamic one."""
        self.seen[hw] = self.seen.get(hw, 0) + 1
        if hw not in self.graphs and self.seen[hw] >= FIXED_AFTER:
            if len(self.graphs) < MAX_SIZES:
                self.graphs[hw] = self._export(hw)
        if hw in self.graphs:
            return self.graphs[hw]
        if self.dynamic is None:
            self.dynamic = self._export(None)
        return self.dynamic

    def probability(self, x: np.ndarray) -> np.ndarray:
        """(H, W) preprocessed frame -> (H, W) float32 probability."""
        return self.graph((int(x.shape[0]), int(x.shape[1]))).probability(x)
