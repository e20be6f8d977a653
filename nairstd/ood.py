"""Our own out-of-distribution check: false targets per frame on scenes and frame sizes the
training split never showed, and Pd where there are targets.

Sets, built from a dataset's TEST split (SIRST in practice) and the synthetic generator:

| set | frames | what it measures |
|---|---|---|
| `test` | test frames, native size, with targets | Pd / Fa / false targets per frame in distribution |
| `empty-native` | test frames with their targets inpainted out (nairstd.data.background) | false targets per target-free frame |
| `empty-640x512`, `empty-1920x1080` | the same, rescaled to that size | ... at sensor frame sizes |
| `synthetic-640x512`, `synthetic-1920x1080` | the `synthetic` preset drawn at that size (seeds apart from the training set), with targets | Pd and false targets on unseen clutter |

Every model runs as `predict` runs it (native protocol unless told, tiles above 1024 px); a pixel
is a detection above the model's threshold (0.5 unless the checkpoint records one). Frame counts
per profile (`FRAMES`) keep the check bounded on a CPU: `quick` uses every test frame at native
size, 16 at 640x512, 6 at 1920x1080 and 8 / 4 synthetic frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from nairstd.data.background import inpaint_targets
from nairstd.data.images import resize_image
from nairstd.metrics import IRSTDMetrics

SIZES: dict[str, tuple[int, int]] = {"640x512": (512, 640), "1920x1080": (1080, 1920)}
# Frames per set and profile (None: the whole test split).
FRAMES: dict[str, dict[str, int | None]] = {
    "smoke": {"native": 4, "640x512": 1, "1920x1080": 1, "synthetic-640x512": 1},
    "quick": {
        "native": None,
        "640x512": 16,
        "1920x1080": 6,
        "synthetic-640x512": 8,
        "synthetic-1920x1080": 4,
    },
    "paper": {
        "native": None,
        "640x512": None,
        "1920x1080": None,
        "synthetic-640x512": 50,
        "synthetic-1920x1080": 20,
    },
}
SYNTH_SEED_OFFSET = 7919  # synthetic OOD frames: a seed apart from every generated dataset
COLUMNS = ["set", "size", "frames", "targets", "Pd", "Fa", "fa_per_frame"]


def synthetic_frames(shape: tuple[int, int], n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`n` frames of the `synthetic` preset at (H, W): drawn square at max(H, W), cropped."""
    from nairstd.data.synthetic import generate_image, image_rng, preset

    h, w = shape
    config = preset("synthetic").replace(image_size=max(h, w))
    seed = config.seed + SYNTH_SEED_OFFSET
    frames = []
    for i in range(n):
        image, mask, _ = generate_image(image_rng(seed, i), config)
        frames.append((image[:h, :w].astype(np.float32) / 255.0, mask[:h, :w]))
    return frames


def ood_sets(index: Any, profile: str = "quick") -> Iterator[tuple[str, str, list]]:
    """(set name, size label, [(image, mask), ...]) for every set of the check."""
    counts = FRAMES[profile]
    stems = index.split("test")
    n_native = counts["native"]
    test = [index.load(s) for s in stems[:n_native]]
    yield "test", "native", test
    empty = [(inpaint_targets(img, m, seed=i), np.zeros_like(m)) for i, (img, m) in enumerate(test)]
    yield "empty-native", "native", empty
    for label, shape in SIZES.items():
        if label not in counts:
            continue
        chosen = empty[: counts[label]]
        frames = [(resize_image(img, shape), np.zeros(shape, bool)) for img, _ in chosen]
        yield f"empty-{label}", label, frames
    for label, shape in SIZES.items():
        n = counts.get(f"synthetic-{label}")
        if n:
            yield f"synthetic-{label}", label, synthetic_frames(shape, n)


def score_frames(
    model: Any,
    frames: list[tuple[np.ndarray, np.ndarray]],
    threshold: float = 0.5,
    protocol: str = "native",
    preprocessing: dict | None = None,
) -> dict[str, Any]:
    """Pd, Fa and false targets per frame of `model` (torch model or classical function)."""
    from nairstd.sweep import probability_maps

    metrics = IRSTDMetrics(threshold=threshold)
    for image, mask in frames:
        ((prob, gt),) = probability_maps(
            model, [(image, mask)], protocol, preprocessing=preprocessing
        )
        metrics.update(prob, gt)
    m = metrics.compute()
    return {
        "frames": m["n_images"],
        "targets": m["n_gt_objects"],
        "Pd": m["Pd"],
        "Fa": m["Fa"],
        "fa_per_frame": m["FA_per_image"],
    }


def ood_check(
    model: Any,
    index: Any,
    profile: str = "quick",
    threshold: float = 0.5,
    protocol: str = "native",
    preprocessing: dict | None = None,
    sets: list[tuple[str, str, list]] | None = None,
) -> list[dict[str, Any]]:
    """One row per OOD set (COLUMNS). Pass `sets` (list(ood_sets(...))) to score several models
    on the same frames without rebuilding them."""
    sets = sets if sets is not None else list(ood_sets(index, profile))
    rows = []
    for name, size, frames in sets:
        if not frames:
            continue
        r = score_frames(model, frames, threshold, protocol, preprocessing)
        rows.append({"set": name, "size": size, **r})
    return rows


def main(argv: list[str] | None = None) -> int:
    """`python -m nairstd.ood [--checkpoint CKPT] --dataset SIRST`: the check for one model."""
    import argparse
    import json
    import math

    from nairstd.data import find_dataset
    from nairstd.operating import default_checkpoint, operating_point
    from nairstd.train.checkpoint import load_model
    from nairstd.train.config import cpu_threads

    parser = argparse.ArgumentParser(prog="python -m nairstd.ood", description=__doc__)
    parser.add_argument("--checkpoint", help="checkpoint or run folder (default: shipped)")
    parser.add_argument("--dataset", default="SIRST", help="whose test split (default SIRST)")
    parser.add_argument("--profile", default="quick", choices=list(FRAMES))
    parser.add_argument("--protocol", choices=["native", "resize256"])
    parser.add_argument("--threshold", type=float, help="default: the checkpoint's, else 0.5")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    model, ckpt = load_model(args.checkpoint or default_checkpoint())
    protocol, threshold = operating_point(ckpt, args.protocol, args.threshold)
    with cpu_threads(1):
        rows = ood_check(
            model,
            find_dataset(args.dataset),
            args.profile,
            threshold,
            protocol,
            ckpt.get("preprocessing"),
        )
    if args.json:
        clean = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in rows
        ]
        print(json.dumps({"protocol": protocol, "threshold": threshold, "rows": clean}))
        return 0
    print(f"{ckpt['path']}: protocol {protocol}, threshold {threshold}")
    for r in rows:
        print(
            f"{r['set']:>20} {r['size']:>9} {r['frames']:>4} frames: Pd {r['Pd']:6.2f} | "
            f"Fa {r['Fa']:8.2f} | false targets per frame {r['fa_per_frame']:.3f}"
        )
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
