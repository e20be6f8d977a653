"""Two candidate gates after the isolation test, on the shipped na_irstd's maps (issue 23).

Runs the shipped model (its native protocol) on the 24 `synthetic-clutter` and 24
`synthetic-clutter-targets` frames and on SIRST val (never test), takes its detections at its
threshold, keeps those the shipped isolation test keeps, and counts, for each gate setting, the
clutter false targets it would remove and the val targets it would lose (a detection is a target
when it overlaps a target's mask):

- thin support: the region grown again at a low level (alpha_low) adds, beyond the detection's
  core, a part at least `extent` px long and at most `width` px wide on average (a pole, a mast);
- local SNR floor: the peak stands less than k robust sigmas (1.4826 MAD of the window) above
  the window's median.

    NAIRSTD_DATA=../shared/datasets NAIRSTD_THREADS=1 python scripts/gate_study.py

README, "Rejecting structure ends": neither was kept. About 5 min on one thread.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import ndimage

from nairstd.data import find_dataset
from nairstd.data.synthetic.clutter import clutter_config, clutter_frame
from nairstd.data.synthetic.structures import KINDS
from nairstd.grid import EIGHT_CONNECTED
from nairstd.isolation import IsolationTest
from nairstd.ood import frame_counts
from nairstd.operating import PRETRAINED
from nairstd.sweep import probability_maps
from nairstd.train.checkpoint import load_model

HALF = 24  # window half-side, px (the isolation test's)


def frames() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]:
    """(set, image, mask, element kinds or None) for the clutter sets and SIRST val."""
    out = []
    for name in ("synthetic-clutter", "synthetic-clutter-targets"):
        config = clutter_config(name)
        for i in range(frame_counts("quick")[name]):
            f = clutter_frame(config, i)
            out.append((name, f.as_float(), f.mask, f.kind))
    index = find_dataset("SIRST")
    for stem in index.split("val"):
        image, mask = index.load(stem)
        out.append(("SIRST val", image, mask, None))
    return out


def window(image: np.ndarray, py: int, px: int) -> tuple[np.ndarray, int, int]:
    h, w = image.shape
    y0, x0 = max(py - HALF, 0), max(px - HALF, 0)
    return image[y0 : min(py + HALF + 1, h), x0 : min(px + HALF + 1, w)], py - y0, px - x0


def features(image: np.ndarray, py: int, px: int, area: int) -> dict[str, float]:
    """Local SNR of the peak and, per low level, the support's extent and pixel count."""
    win, cy, cx = window(image, py, px)
    yy, xx = np.ogrid[: win.shape[0], : win.shape[1]]
    own = (yy - cy) ** 2 + (xx - cx) ** 2 <= (2 + np.sqrt(area)) ** 2
    background = win[~own]
    b = float(np.median(background))
    sigma = 1.4826 * float(np.median(np.abs(background - b))) + 1e-9
    v = float(image[py, px])
    out = {"snr": (v - b) / sigma}
    core_labels, _ = ndimage.label(win >= b + 0.5 * (v - b), structure=EIGHT_CONNECTED)
    core = ndimage.binary_dilation(core_labels == core_labels[cy, cx])
    for alpha in (0.1, 0.15, 0.2):
        labels, _ = ndimage.label(win >= b + alpha * (v - b), structure=EIGHT_CONNECTED)
        support = (labels == labels[cy, cx]) & ~core
        ys, xs = np.nonzero(support)
        extent = 0 if len(ys) == 0 else max(np.ptp(ys) + 1, np.ptp(xs) + 1)
        out[f"extent_{alpha}"], out[f"support_{alpha}"] = extent, int(support.sum())
    return out


def detections() -> pd.DataFrame:
    model, ckpt = load_model(PRETRAINED / "na_irstd.pt")
    threshold, test = float(ckpt["threshold"]), IsolationTest.from_dict(ckpt["reject_structures"])
    rows = []
    for name, image, mask, kind in frames():
        ((prob, _),) = probability_maps(model, [(image, mask)])
        labels, _ = ndimage.label(prob > threshold, structure=EIGHT_CONNECTED)
        for j, box in enumerate(ndimage.find_objects(labels), start=1):
            inside = labels[box] == j
            if test.is_structure_end(image, box[0], box[1], inside):
                continue
            flat = int(np.argmax(np.where(inside, image[box], -np.inf)))
            py, px = box[0].start + flat // inside.shape[1], box[1].start + flat % inside.shape[1]
            rows.append(
                {
                    "set": name,
                    "true": bool(mask[box][inside].any()),
                    "kind": KINDS[kind[py, px]] if kind is not None else "",
                    **features(image, py, px, int(inside.sum())),
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    df = detections()
    false_clutter = (df.set == "synthetic-clutter") & ~df.true
    val_true = (df.set == "SIRST val") & df.true
    print(f"kept by the isolation test: {false_clutter.sum()} clutter false targets (24 frames), "
          f"{val_true.sum()} SIRST val targets")  # fmt: skip
    rows = []
    for alpha, extent, width in itertools.product((0.1, 0.15, 0.2), (10, 12, 14, 16), (1.5, 2)):
        cut = (df[f"extent_{alpha}"] >= extent) & (df[f"support_{alpha}"] <= width * extent)
        rows.append(("thin support", f"alpha {alpha} extent {extent} width {width}", cut))
    for k in (1.5, 2.0, 2.5, 3.0):
        rows.append(("SNR floor", f"k {k}", df.snr < k))
    for gate, setting, cut in rows:
        kinds = df[cut & false_clutter].kind.value_counts().to_dict()
        print(f"{gate:12s} {setting:32s} clutter false -{(cut & false_clutter).sum():3d}  "
              f"val targets lost {(cut & val_true).sum():2d}  {kinds}")  # fmt: skip


if __name__ == "__main__":
    main()
