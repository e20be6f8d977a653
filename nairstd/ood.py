"""Our own out-of-distribution check: false targets per frame on scenes and frame sizes the
training split never showed, and Pd where there are targets.

Sets, built from a dataset's TEST split (SIRST in practice) and the synthetic generator:

| set | frames | what it measures |
|---|---|---|
| `test` | test frames, native size, with targets | Pd / Fa / false targets per frame in distribution |
| `empty-native` | test frames with their targets inpainted out (nairstd.data.background) | false targets per target-free frame |
| `empty-640x512`, `empty-1920x1080` | the same, rescaled to that size | ... at sensor frame sizes |
| `synthetic-640x512`, `synthetic-1920x1080` | the `synthetic` preset drawn at that size (seeds apart from the training set), with targets | Pd and false targets on unseen clutter |
| `synthetic-clutter` | target-free urban / road / skyline frames at 640x512, 1280x1024, 1920x1080, 8- and 16-bit (nairstd.data.synthetic.clutter) | false targets per frame where users' real frames raise them: lamp heads, roof lines, masts |
| `synthetic-clutter-targets` | the same kind of frames with 1-4 point targets of 2-9 px each | Pd among that clutter |

Every model runs as `predict` runs it (native protocol unless told, tiles above 1024 px); a pixel
is a detection above the model's threshold (0.5 unless the checkpoint records one). Frame counts
per profile (`Profile.ood_frames`) keep the check bounded on a CPU: `quick` uses every test frame at
every size, 8 / 4 synthetic frames and 24 + 24 clutter frames (`paper`: 50 / 20, 60 + 60).

Besides Pd and false targets per frame, each row says what the false targets look like: the
fraction of frames with at least one, their median area and the median of their peak
probability (users judge a proxy by whether its false alarms are the small, confident ones their
own frames raise, not only by how many).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from scipy import ndimage

from nairstd.data.background import inpaint_targets
from nairstd.data.images import resize_image
from nairstd.isolation import IsolationTest, suppress_structure_ends
from nairstd.metrics import IRSTDMetrics
from nairstd.profiles import DEFAULT_PROFILE, get_profile
from nairstd.protocols import NATIVE

SIZES: dict[str, tuple[int, int]] = {"640x512": (512, 640), "1920x1080": (1080, 1920)}


def frame_counts(profile: str) -> dict[str, int | None]:
    """Frames per set of `profile` (`Profile.ood_frames`; None: the whole test split)."""
    return dict(get_profile(profile).ood_frames)


SYNTH_SEED_OFFSET = 7919  # synthetic OOD frames: a seed apart from every generated dataset
CLUTTER_SETS = ("synthetic-clutter", "synthetic-clutter-targets")  # generated at several sizes
MIXED = "mixed"  # size label of a set whose frames come at several sizes
COLUMNS = [
    "set",
    "size",
    "frames",
    "targets",
    "Pd",
    "Fa",
    "fa_per_frame",
    "frames_with_false",  # fraction of frames with at least one false target
    "false_area_median",  # px, over every false target of the set (None when there is none)
    "false_peak_median",  # probability at the false target's most confident pixel
]


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


def clutter_frames(name: str, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first `n` frames of clutter set `name` as read from the PNGs `python -m nairstd data
    clutter` writes (the same pixels: 8-bit / 255, 16-bit / 65535)."""
    from nairstd.data.synthetic.clutter import frames

    return frames(name, n)


def ood_sets(
    index: Any, profile: str = DEFAULT_PROFILE, only: Iterable[str] | None = None
) -> Iterator[tuple[str, str, list]]:
    """(set name, size label, [(image, mask), ...]) for every set of the check (`only`: just
    those sets; without a set of the dataset's, `index` is not read and may be None)."""
    counts = frame_counts(profile)
    wanted = None if only is None else set(only)
    if wanted is None or wanted - set(CLUTTER_SETS):
        yield from _dataset_sets(index, counts, wanted)
    for name in CLUTTER_SETS:
        n = counts.get(name)
        if n and (wanted is None or name in wanted):
            yield name, MIXED, clutter_frames(name, n)


def _dataset_sets(
    index: Any, counts: dict[str, int | None], wanted: set[str] | None
) -> Iterator[tuple[str, str, list]]:
    """The sets made from the dataset's test split and the `synthetic` preset."""

    def keep(name: str) -> bool:
        return wanted is None or name in wanted

    stems = index.split("test")
    n_native = counts["native"]
    test = [index.load(s) for s in stems[:n_native]]
    if keep("test"):
        yield "test", "native", test
    empty = [(inpaint_targets(img, m, seed=i), np.zeros_like(m)) for i, (img, m) in enumerate(test)]
    if keep("empty-native"):
        yield "empty-native", "native", empty
    for label, shape in SIZES.items():
        if label not in counts or not keep(f"empty-{label}"):
            continue
        chosen = empty[: counts[label]]
        frames = [(resize_image(img, shape), np.zeros(shape, bool)) for img, _ in chosen]
        yield f"empty-{label}", label, frames
    for label, shape in SIZES.items():
        n = counts.get(f"synthetic-{label}")
        if n and keep(f"synthetic-{label}"):
            yield f"synthetic-{label}", label, synthetic_frames(shape, n)


class OODScore:
    """IRSTDMetrics over one set, plus the character of its false targets (unmatched predicted
    objects): how many frames hold one, their areas and peak probabilities."""

    def __init__(self, threshold: float) -> None:
        self.metrics = IRSTDMetrics(threshold=threshold)
        self.per_frame: list[int] = []
        self.areas: list[int] = []
        self.peaks: list[float] = []

    def update(self, prob: np.ndarray, gt: np.ndarray) -> None:
        match = self.metrics.update(prob, gt)
        ids = match.unmatched_pred
        self.per_frame.append(len(ids))
        if len(ids):
            self.areas += match.pred_areas[ids - 1].tolist()
            peaks = ndimage.maximum(prob, labels=match.pred_labels, index=ids)
            self.peaks += np.atleast_1d(peaks).astype(float).tolist()

    def row(self) -> dict[str, Any]:
        m = self.metrics.compute()
        return {
            "frames": m["n_images"],
            "targets": m["n_gt_objects"],
            "Pd": m["Pd"],
            "Fa": m["Fa"],
            "fa_per_frame": m["FA_per_image"],
            "frames_with_false": float(np.mean([n > 0 for n in self.per_frame])),
            "false_area_median": float(np.median(self.areas)) if self.areas else None,
            "false_peak_median": float(np.median(self.peaks)) if self.peaks else None,
        }


def score_frames(
    model: Any,
    frames: list[tuple[np.ndarray, np.ndarray]],
    threshold: float = 0.5,
    protocol: str = NATIVE,
    preprocessing: dict | None = None,
    structures: IsolationTest | None = None,
) -> dict[str, Any]:
    """Pd, Fa, false targets per frame and their character (`OODScore.row`) of `model` (torch
    model or classical function); `structures`: detections the isolation test calls structure
    ends dropped first, as predict --reject-structures on does (nairstd.isolation)."""
    from nairstd.sweep import probability_maps

    score = OODScore(threshold)
    for image, mask in frames:
        ((prob, gt),) = probability_maps(
            model, [(image, mask)], protocol, preprocessing=preprocessing
        )
        if structures is not None:
            prob, _ = suppress_structure_ends(image, prob, threshold, structures)
        score.update(prob, gt)
    return score.row()


def ood_check(
    model: Any,
    index: Any,
    profile: str = "quick",
    threshold: float = 0.5,
    protocol: str = NATIVE,
    preprocessing: dict | None = None,
    sets: list[tuple[str, str, list]] | None = None,
    only: Iterable[str] | None = None,
    structures: IsolationTest | None = None,
) -> list[dict[str, Any]]:
    """One row per OOD set (COLUMNS). Pass `sets` (list(ood_sets(...))) to score several models
    on the same frames without rebuilding them; `only` scores just the sets named."""
    sets = sets if sets is not None else list(ood_sets(index, profile, only))
    rows = []
    for name, size, frames in sets:
        if not frames:
            continue
        r = score_frames(model, frames, threshold, protocol, preprocessing, structures)
        rows.append({"set": name, "size": size, **r})
    return rows
