"""Run an exported model (`python -m nairstd export`) on onnxruntime inside the same pipeline.

`OnnxModel` stands where `predict_probability` takes a torch model: it maps one preprocessed
frame (or tiling window) to its probability map, so tiling, protocols, thresholds and outputs
are the torch path's own code. The ONNX file carries what a checkpoint carries (protocol,
threshold, preprocessing, model name; `nairstd.export`), and `info` hands it to
`nairstd.operating` and `nairstd.data.preprocess` as a checkpoint dict would.

Threads: onnxruntime gets as many intra-op threads as torch has (`NAIRSTD_THREADS` sets both),
so one-thread runs stay one thread. Device: CUDA when asked for (or `auto` and the installed
onnxruntime has the CUDA provider: `onnxruntime-gpu`), else the CPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from nairstd.data.images import DataError

ONNX_FORMAT = "nairstd-onnx-1"
INPUT_NAME = "image"
OUTPUT_NAME = "probability"
BACKENDS = ("auto", "torch", "onnxruntime")


@runtime_checkable
class ProbabilityModel(Protocol):
    """What `predict_probability` runs besides a torch model: a preprocessed (H, W) float32
    frame -> its (H, W) probability map (`OnnxModel`, `nairstd.onnx_sized.SizedOnnxModel`), with
    a checkpoint-like `info` dict (protocol, threshold, preprocessing)."""

    info: dict[str, Any]

    def probability(self, x: np.ndarray) -> np.ndarray: ...


def is_onnx_file(path: Any) -> bool:
    """True for a path (str or PathLike) naming an .onnx file; a model object or None is not."""
    return isinstance(path, str | os.PathLike) and Path(path).suffix.lower() == ".onnx"


def providers_for(device: Any) -> list[Any]:
    """onnxruntime execution providers for a device name (auto, cpu, cuda, cuda:N)."""
    import onnxruntime as ort

    name = "auto" if device is None else str(device)
    available = ort.get_available_providers()
    if name == "auto":
        name = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if name == "cpu":
        return ["CPUExecutionProvider"]
    if name == "cuda" or name.startswith("cuda:"):
        if "CUDAExecutionProvider" not in available:
            raise ValueError(
                f"--device {device!r}: this onnxruntime has no CUDA provider (available: "
                f"{', '.join(available)}; install onnxruntime-gpu for CUDA)"
            )
        index = int(name.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    raise ValueError(f"--device {device!r}: not a device (auto, cpu, cuda, cuda:N)")


def session_options(threads: int | None = None):
    """One-process defaults: `threads` intra-op threads (None: torch's count), no inter-op
    pool, and onnxruntime's own log quiet (a failure reaches the user once, as our message)."""
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 4  # fatal only
    return options


def read_metadata(proto_or_session: Any) -> dict[str, str]:
    """The ONNX file's metadata_props (a ModelProto) or custom metadata (an InferenceSession)."""
    if hasattr(proto_or_session, "get_modelmeta"):
        return dict(proto_or_session.get_modelmeta().custom_metadata_map)
    return {p.key: p.value for p in proto_or_session.metadata_props}


def checkpoint_info(meta: dict[str, str], where: str) -> dict[str, Any]:
    """The checkpoint-like dict an exported file describes (model, protocol, threshold,
    preprocessing, ...), as `operating_point` and `checkpoint_preprocessing` read it."""
    if meta.get("nairstd.format") != ONNX_FORMAT:
        raise DataError(
            f"{where}: not an ONNX file written by `python -m nairstd export` (no "
            f"nairstd.format = {ONNX_FORMAT} in its metadata)"
        )
    info: dict[str, Any] = {"path": where, "backend": "onnxruntime"}
    for key in ("model", "size", "protocol", "run_id", "commit", "export_commit"):
        if meta.get(key):
            info[key] = meta[key]
    try:
        if meta.get("threshold"):
            info["threshold"] = float(meta["threshold"])
        if meta.get("preprocessing"):
            info["preprocessing"] = json.loads(meta["preprocessing"])
        if meta.get("reject_structures"):
            info["reject_structures"] = json.loads(meta["reject_structures"])
    except ValueError as err:
        raise DataError(f"{where}: unreadable metadata ({err})") from err
    return info


class OnnxModel:
    """An exported nairstd model on onnxruntime: `probability(x)` maps a preprocessed (H, W)
    float32 frame to its (H, W) probability map, as the torch model + sigmoid does."""

    def __init__(self, session: Any, info: dict[str, Any], input_hw: tuple[int, int] | None):
        self.session = session
        self.info = info
        self.input_hw = input_hw  # None: any size (exported with --dynamic)

    @classmethod
    def load(
        cls, source: str | os.PathLike | bytes, device: Any = "auto", threads: int | None = None
    ) -> OnnxModel:
        """From an .onnx file (or its bytes). Errors name the file, as one DataError."""
        import onnxruntime as ort

        where = "<in-memory ONNX>" if isinstance(source, bytes) else str(source)
        if not isinstance(source, bytes) and not Path(source).is_file():
            raise DataError(f"{where}: ONNX file not found")
        providers = providers_for(device)
        try:
            session = ort.InferenceSession(
                source if isinstance(source, bytes) else str(source),
                session_options(threads),
                providers=providers,
            )
        except Exception as err:  # onnxruntime raises its own classes for a bad file
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DataError(f"{where}: onnxruntime cannot load it ({first})") from err
        info = checkpoint_info(read_metadata(session), where)
        info["providers"] = session.get_providers()
        shape = session.get_inputs()[0].shape
        fixed = all(isinstance(v, int) for v in shape[-2:])
        return cls(session, info, (shape[-2], shape[-1]) if fixed else None)

    @property
    def name(self) -> str:
        return str(self.info.get("model", "onnx"))

    def probability(self, x: np.ndarray) -> np.ndarray:
        """(H, W) preprocessed frame -> (H, W) float32 probability."""
        h, w = x.shape
        if self.input_hw is not None and (h, w) != tuple(self.input_hw):
            fh, fw = self.input_hw
            raise DataError(
                f"{self.info['path']}: this ONNX model takes {fw}x{fh} inputs only (exported with "
                f"--size); the network input here is {w}x{h} (export with --dynamic for any size)"
            )
        feed = np.ascontiguousarray(x, dtype=np.float32)[None, None]
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: feed})[0][0, 0]
