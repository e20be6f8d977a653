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
per profile (`Profile.ood_frames`) keep the check bounded on a CPU: `quick` uses every test frame at
every size and 8 / 4 synthetic frames (`paper`: 50 / 20).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from nairstd.data.background import inpaint_targets
from nairstd.data.images import resize_image
from nairstd.metrics import IRSTDMetrics
from nairstd.profiles import DEFAULT_PROFILE, get_profile
from nairstd.protocols import NATIVE

SIZES: dict[str, tuple[int, int]] = {"640x512": (512, 640), "1920x1080": (1080, 1920)}


def frame_counts(profile: str) -> dict[str, int | None]:
    """Frames per set of `profile` (`Profile.ood_frames`; None: the whole test split)."""
    return dict(get_profile(profile).ood_frames)


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


def ood_sets(index: Any, profile: str = DEFAULT_PROFILE) -> Iterator[tuple[str, str, list]]:
    """(set name, size label, [(image, mask), ...]) for every set of the check."""
    counts = frame_counts(profile)
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
    protocol: str = NATIVE,
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
    protocol: str = NATIVE,
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
