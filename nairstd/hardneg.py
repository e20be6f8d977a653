"""Model-mined hard negatives on the training clutter frames (issue 23).

The clutter samples of `TrainConfig.clutter_p` are cropped on targets, on the frame's brightest
pixels or anywhere. Brightness is a guess at where a model errs; this module asks the model
instead: it runs a trained model over the first N frames of the *training* clutter set
(`TRAIN_CLUTTER`, a seed apart from the OOD check's sets), keeps every detection at `threshold`
that matches no target (a false target, as `nairstd.metrics` counts them) and records the pixel
where its probability peaks. A fine-tune with `TrainConfig.clutter_mined` pointing at that
record crops its clutter samples on those pixels instead of the brightest ones
(`IRSTDDataset.clutter_item`).

    python -c "from nairstd.hardneg import mine_file; print(mine_file('nairstd/pretrained/na_irstd.pt', 64))"

The record is named by a digest of its content (`mined_<sha8>.json`), so a config that names it
names exactly these centres, and the run id (which hashes the config) changes with them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from nairstd.io import write_text


def mine_false_targets(
    model: Any, ckpt: dict[str, Any], frames: int, threshold: float = 0.5
) -> dict[str, Any]:
    """False targets of `model` on training clutter frames 0..frames-1 at `threshold` (native,
    the checkpoint's preprocessing, no isolation test: the model's own errors)."""
    from nairstd.data.synthetic.clutter import TRAIN_CLUTTER, clutter_frame
    from nairstd.metrics import IRSTDMetrics
    from nairstd.probability import predict_probability
    from nairstd.protocols import NATIVE

    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames!r}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")
    metrics = IRSTDMetrics(threshold=threshold)
    centres: dict[str, list[list[int]]] = {}
    per_frame: list[int] = []
    for i in range(frames):
        frame = clutter_frame(TRAIN_CLUTTER, i)
        prob = predict_probability(
            model, frame.as_float(), NATIVE, preprocessing=ckpt.get("preprocessing")
        )
        match = metrics.update(prob, frame.mask)
        points = []
        for label in match.unmatched_pred:
            inside = match.pred_labels == label
            r, c = np.unravel_index(np.argmax(np.where(inside, prob, -1.0)), prob.shape)
            points.append([int(r), int(c)])
        per_frame.append(len(points))
        if points:
            centres[str(i)] = points
    return {
        "model": ckpt.get("model"),
        "clutter_seed": TRAIN_CLUTTER.seed,
        "frames": frames,
        "threshold": threshold,
        "false_targets": int(sum(per_frame)),
        "per_frame": per_frame,
        "centres": centres,
    }


def write_mined(record: dict[str, Any], out_dir: Path) -> Path:
    """Write `record` as out_dir/mined_<sha8>.json (atomic; the name is its content's digest)."""
    text = json.dumps(record, indent=1, sort_keys=True) + "\n"
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    out = Path(out_dir) / f"mined_{digest}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, text)
    return out


def load_mined(path: str | Path) -> dict[int, np.ndarray]:
    """{training clutter frame index: (n, 2) int array of (row, col) centres} from a record
    written by `write_mined`; a missing or malformed file raises ValueError naming it."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        centres = {int(k): np.asarray(v, dtype=np.int64) for k, v in record["centres"].items()}
    except FileNotFoundError:
        raise ValueError(f"{path}: no such mined hard-negative record") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a mined hard-negative record ({err})") from None
    for k, v in centres.items():
        if v.ndim != 2 or v.shape[1] != 2 or (v < 0).any():
            raise ValueError(f"{path}: frame {k}: centres must be (row, col) pairs >= 0")
    return centres


def mine_file(
    checkpoint: str | Path, frames: int = 64, threshold: float = 0.5, out_dir: Path | None = None
) -> Path:
    """Mine with the model in `checkpoint` and write the record (default: outputs/hardneg/)."""
    from nairstd.paths import outputs_root
    from nairstd.train.checkpoint import load_model

    model, ckpt = load_model(Path(checkpoint))
    record = mine_false_targets(model, ckpt, frames, threshold)
    record["checkpoint"] = str(checkpoint)
    return write_mined(record, out_dir or outputs_root() / "hardneg")
