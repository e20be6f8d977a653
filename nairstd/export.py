"""Export a checkpoint to ONNX: `python -m nairstd export --checkpoint CKPT --out model.onnx`.

The graph is the model in eval mode plus the sigmoid: input ``image`` (1, 1, H, W) float32, the
frame already preprocessed as the metadata's ``preprocessing`` says (ours: standardised with the
whole frame's mean and std, which is why it stays outside the graph: a tiled frame's windows
share it); output ``probability`` (1, 1, H, W). Padding to the model's multiple, the
native-resolution branch, the scorer, the Top-K selection (ONNX TopK) and the gather / scatter of
the selected patches are all inside. ``--dynamic`` (the default) takes any H and W; ``--size
WxH`` fixes them.

Every export is checked before it is written: `onnx.checker` (full check), a Top-K node present
for models with a native branch, and onnxruntime against PyTorch on seeded frames (the traced size
and, when dynamic, sizes with other padding and fewer patches than K) within `TOLERANCE` on the
probability. What fails is refused with one DataError naming the operator (or, for a graph that
does not generalise across sizes, the size logic the trace froze), and nothing is written.

The metadata (``metadata_props``) carries what a checkpoint carries: model name and size,
protocol, threshold, preprocessing, run id, the checkpoint's commit and sha256, the exporting
code's commit; `nairstd.onnx_backend` reads it back for `predict`.

Exporter: the TorchScript-based `torch.onnx.export(..., dynamo=False)`, which needs no package
beyond onnx; the models trace because their size logic is traced where it matters
(`pad_to_multiple`, `k_for`, `select_top_k`, `scatter_windows` check `torch.jit.is_tracing()`).
"""

from __future__ import annotations

import io
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nairstd.data.images import DataError
from nairstd.data.preprocess import checkpoint_preprocessing
from nairstd.io import sha256_file, write_with
from nairstd.models.traits import has_native_branch, pad_multiple, unwrap
from nairstd.onnx_backend import (
    INPUT_NAME,
    ONNX_FORMAT,
    OUTPUT_NAME,
    read_metadata,
    session_options,
)
from nairstd.operating import default_checkpoint, operating_point
from nairstd.paths import git_commit
from nairstd.train.checkpoint import load_model, resolve_checkpoint

FORMATS = ("onnx",)
OPSET = 17  # LayerNormalization is native from 17; onnxruntime >= 1.14 runs it
TOLERANCE = 1e-4  # max abs difference of the probability, onnxruntime vs PyTorch
TRACE_HW = (256, 256)  # (H, W) of the example frame a dynamic export is traced at
# Checked sizes of a dynamic export: the traced one, then other pads (and 4 patches < K = 5).
CHECK_HW = ((256, 256), (100, 150), (37, 45))
PACKAGE = Path(__file__).resolve().parent


class _Probability(nn.Module):
    """The exported function: sigmoid(model(x)) in float32, as `predict_probability` computes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.net = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x).float())


def _checkpoint_commit(ckpt: dict[str, Any]) -> str:
    """The commit a checkpoint records, or its shipped summary (`<name>.json` beside it) does."""
    if ckpt.get("commit"):
        return str(ckpt["commit"])
    path = ckpt.get("path")
    summary = Path(path).with_suffix(".json") if path else None
    if summary is not None and summary.is_file():
        try:
            info = json.loads(summary.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return "unknown"
        if isinstance(info, dict) and info.get("run_id") == ckpt.get("run_id"):
            return str(info.get("commit") or "unknown")
    return "unknown"


def export_metadata(
    model: nn.Module, ckpt: dict[str, Any], input_hw: tuple[int, int] | None
) -> dict[str, str]:
    """The metadata_props of an export of `model` from checkpoint dict `ckpt` (all strings)."""
    protocol, threshold = operating_point(ckpt)
    meta = {
        "nairstd.format": ONNX_FORMAT,
        "model": str(ckpt.get("model", type(unwrap(model)).__name__)),
        "size": str(ckpt.get("size", "")),
        "overrides": json.dumps(ckpt.get("overrides") or {}, sort_keys=True),
        "protocol": protocol,
        "threshold": repr(float(threshold)),
        "preprocessing": json.dumps(checkpoint_preprocessing(ckpt), sort_keys=True),
        "input": "dynamic" if input_hw is None else f"{input_hw[1]}x{input_hw[0]}",
        "io": f"{INPUT_NAME} (1, 1, H, W) float32 preprocessed as 'preprocessing' says -> "
        f"{OUTPUT_NAME} (1, 1, H, W) float32",
        "pad_multiple": str(pad_multiple(model)),
        "run_id": str(ckpt.get("run_id") or ""),
        "commit": _checkpoint_commit(ckpt),
        "export_commit": git_commit(),
        "torch": torch.__version__,
        "opset": str(OPSET),
    }
    if ckpt.get("reject_structures"):  # a calibrated copy's isolation test travels with it
        meta["reject_structures"] = json.dumps(ckpt["reject_structures"], sort_keys=True)
    if has_native_branch(model):
        meta["top_k"] = str(unwrap(model).top_k)
    path = ckpt.get("path")
    if path and Path(path).is_file():
        meta["checkpoint"] = Path(path).name
        meta["checkpoint_sha256"] = sha256_file(path)
    return meta


def _exporter_message(err: BaseException) -> str:
    """The exporter's reason on one line, without its boilerplate (it names the operator)."""
    text = " ".join(str(err).split()) or type(err).__name__
    for tail in (" Please feel free", " Please report", " Please open"):
        text = text.split(tail)[0]
    return text.rstrip(". ")


def _frozen_lines(caught: list[warnings.WarningMessage]) -> list[str]:
    """Where the trace turned a size into a Python constant, in this package (file:line)."""
    found: list[str] = []
    for w in caught:
        if not issubclass(w.category, torch.jit.TracerWarning):
            continue
        file = Path(w.filename)
        if PACKAGE in file.parents:
            where = f"{file.relative_to(PACKAGE.parent)}:{w.lineno}"
            if where not in found:
                found.append(where)
    return found


def _trace_to_onnx(net: nn.Module, example: torch.Tensor, dynamic: bool, name: str):
    """torch.onnx.export to bytes; (bytes, caught warnings). Exporter failures -> DataError."""
    buffer = io.BytesIO()
    axes = {INPUT_NAME: {2: "height", 3: "width"}, OUTPUT_NAME: {2: "height", 3: "width"}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            torch.onnx.export(
                net,
                (example,),
                buffer,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=OPSET,
                dynamic_axes=axes if dynamic else None,
                do_constant_folding=True,
                dynamo=False,
            )
        except (torch.onnx.errors.OnnxExporterError, RuntimeError, ValueError) as err:
            raise DataError(f"{name}: cannot export to ONNX: {_exporter_message(err)}") from err
    return buffer.getvalue(), list(caught)


def _check_graph(proto: Any, model: nn.Module, name: str) -> None:
    """onnx.checker (full), and a TopK node for a model that selects patches."""
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        message = _exporter_message(err)
        raise DataError(f"{name}: the exported graph fails onnx.checker ({message})") from err
    if has_native_branch(model) and not any(n.op_type == "TopK" for n in proto.graph.node):
        raise DataError(f"{name}: the exported graph lost the Top-K selection (no TopK node)")


def _frame(hw: tuple[int, int], seed: int) -> torch.Tensor:
    """A seeded standardised-noise frame (1, 1, H, W): the distribution the network sees."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.standard_normal((1, 1, *hw), dtype=np.float32))


def verify(
    net: nn.Module, data: bytes, sizes: tuple[tuple[int, int], ...], name: str, frozen: list[str]
) -> list[dict[str, Any]]:
    """onnxruntime vs PyTorch at each (H, W); one row per size; a difference over TOLERANCE
    (or a failure) is a DataError naming the size and what the trace froze."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, session_options(), providers=["CPUExecutionProvider"])
    rows = []
    for i, (h, w) in enumerate(sizes):
        x = _frame((h, w), i)
        with torch.inference_mode():
            want = net(x).numpy()
        try:
            got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
            diff = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf")
        except Exception as err:  # onnxruntime's own error classes
            diff, why = float("nan"), f"onnxruntime failed: {_exporter_message(err)[:200]}"
        else:
            why = f"max abs difference {diff:.3g} > {TOLERANCE:g}"
        if not diff <= TOLERANCE:
            where = f"; size logic frozen by the trace at {', '.join(frozen[:3])}" if frozen else ""
            raise DataError(
                f"{name}: the exported graph does not reproduce the model at {w}x{h} ({why}"
                f"{where}); export it at one fixed size with --size WxH"
            )
        rows.append({"size": f"{w}x{h}", "max_abs_diff": diff})
    return rows


def export_model(
    model: nn.Module,
    input_hw: tuple[int, int] | None = None,
    metadata: dict[str, str] | None = None,
    name: str | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """(ONNX bytes, report) of a model on the CPU; input_hw None: any input size.

    Checked as the module says; a refusal is a DataError and nothing is returned.
    """
    import onnx

    start = time.perf_counter()
    bare = unwrap(model)
    name = name or (metadata or {}).get("model") or type(bare).__name__
    dynamic = input_hw is None
    if dynamic and getattr(getattr(bare, "config", None), "pad_mode", None) == "reflect":
        raise DataError(
            f"{name}: pad_mode 'reflect' (reflect or replicate, chosen by the input size) cannot "
            "be one graph for every size; export it at one fixed size with --size WxH"
        )
    if any(p.device.type != "cpu" for p in bare.parameters()):
        raise ValueError(f"{name}: export a model on the CPU")
    net = _Probability(bare).eval()
    hw = TRACE_HW if dynamic else input_hw
    data, caught = _trace_to_onnx(net, _frame(hw, 0), dynamic, name)
    frozen = _frozen_lines(caught)
    proto = onnx.load_from_string(data)
    _check_graph(proto, bare, name)
    rows = verify(net, data, CHECK_HW if dynamic else (hw,), name, frozen)
    proto.producer_name = "nairstd"
    proto.doc_string = (
        f"nairstd {name}: probability of a small infrared target per pixel "
        f"({(metadata or {}).get('io', '')})"
    )
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    data = proto.SerializeToString()
    report = {
        "model": name,
        "input": "dynamic" if dynamic else f"{hw[1]}x{hw[0]}",
        "verified": rows,
        "nodes": len(proto.graph.node),
        "top_k": any(n.op_type == "TopK" for n in proto.graph.node),
        "bytes": len(data),
        "seconds": time.perf_counter() - start,
    }
    return data, report


def export_checkpoint(
    checkpoint: str | os.PathLike | None,
    out: str | os.PathLike,
    input_hw: tuple[int, int] | None = None,
    fmt: str = "onnx",
) -> dict[str, Any]:
    """Export a checkpoint file or run folder (None: the shipped na_irstd) to `out` (.onnx),
    written atomically; never over the checkpoint. Returns the report plus the metadata."""
    from nairstd.zoo import classical_method

    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    if isinstance(checkpoint, str) and classical_method(checkpoint) is not None:
        raise DataError(f"{checkpoint}: a classical method has no network to export")
    file = resolve_checkpoint(checkpoint if checkpoint is not None else default_checkpoint())
    out = Path(out).expanduser()
    if out.resolve() == file.resolve():
        raise DataError(f"{out}: --out is the input checkpoint; refusing to write over it")
    if out.suffix.lower() != ".onnx":
        raise DataError(f"{out}: the ONNX file's name must end in .onnx (predict goes by it)")
    if out.is_dir():
        raise DataError(f"{out}: is a folder; give the .onnx file to write")
    model, ckpt = load_model(file, "cpu")
    metadata = export_metadata(model, ckpt, input_hw)
    data, report = export_model(model, input_hw, metadata, ckpt["model"])
    write_with(out, lambda tmp: tmp.write_bytes(data))
    return {**report, "path": str(out), "metadata": metadata}


def in_memory_onnx(model: nn.Module, ckpt: dict[str, Any] | None) -> bytes:
    """A dynamic-size export of a loaded model, for `predict --backend onnxruntime` on a
    checkpoint (the same checks as `export`; nothing written)."""
    data, _ = export_model(model, None, export_metadata(model, ckpt or {}, None))
    return data


def describe(path: str | os.PathLike) -> dict[str, str]:
    """The nairstd metadata of an exported file (for reports and tests)."""
    import onnx

    return read_metadata(onnx.load(str(path), load_external_data=False))
