"""Where the false targets on the clutter proxy come from: per frame size and bit depth, and per
structure they sit on (README, "A proxy that looks like real clutter").

    NAIRSTD_THREADS=1 python scripts/clutter_breakdown.py [--models na_irstd detector]
        [--frames 24] [--json out.json]

For each shipped model (nairstd/pretrained, at its recorded protocol and threshold) and each
clutter set (its first `--frames` frames, default: the quick profile's OOD check), the false
targets (detections matching no target, as nairstd.metrics counts them) per frame, the fraction
of frames with any, their median and 90th-percentile area and median peak probability, by frame
size and overall; the element of the scene under each false target's most confident pixel
(`structures.KINDS`; "near X" when it sits on sky or ground within a pixel of X: the blur spreads
a lamp head or a hot pixel onto its neighbours); and, on the set with targets, Pd in the sky and
among the clutter and by the target's peak (radiance units above the background: the air is
~0.4, a lamp head ~1). The frames are those `python -m nairstd ood` scores.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nairstd.data.synthetic.clutter import clutter_config, clutter_frame  # noqa: E402
from nairstd.data.synthetic.structures import KINDS  # noqa: E402
from nairstd.metrics import IRSTDMetrics  # noqa: E402
from nairstd.ood import CLUTTER_SETS, frame_counts  # noqa: E402


def _summary(per_frame: list[int], areas: list[int], peaks: list[float]) -> dict:
    return {
        "frames": len(per_frame),
        "false_per_frame": round(float(np.mean(per_frame)), 3),
        "frames_with_any": round(float(np.mean([n > 0 for n in per_frame])), 3),
        "area_median": float(np.median(areas)) if areas else None,
        "area_p90": round(float(np.percentile(areas, 90)), 1) if areas else None,
        "peak_median": round(float(np.median(peaks)), 3) if peaks else None,
    }


def _order(key: str) -> tuple:
    """'all' first, then the frame sizes by area, then the bit depths."""
    if key == "all":
        return (0, 0)
    if "x" in key:
        w, h = key.split("x")
        return (1, int(w) * int(h))
    return (2, int(key.split("-")[0]))


def breakdown(model, ckpt: dict, name: str, n: int) -> dict:
    """The breakdown of one model on the first `n` frames of clutter set `name`."""
    from scipy import ndimage

    from nairstd.operating import operating_point
    from nairstd.probability import predict_probability

    protocol, threshold = operating_point(ckpt)
    config = clutter_config(name)
    groups: dict[str, tuple[list, list, list]] = defaultdict(lambda: ([], [], []))
    under: Counter = Counter()
    found = {"sky": [0, 0], "clutter": [0, 0]}
    by_peak = {"peak < 0.1": [0, 0], "0.1-0.3": [0, 0], ">= 0.3": [0, 0]}  # radiance units
    metrics = IRSTDMetrics(threshold=threshold)
    for i in range(n):
        frame = clutter_frame(config, i)
        prob = predict_probability(
            model, frame.as_float(), protocol, preprocessing=ckpt.get("preprocessing")
        )
        match = metrics.update(prob, frame.mask)
        h, w = frame.image.shape
        keys = ("all", f"{w}x{h}", f"{frame.info['bits']}-bit")
        ids = match.unmatched_pred
        near = ndimage.grey_dilation(frame.kind, size=(3, 3))
        for key in keys:
            groups[key][0].append(len(ids))
        for label in ids:
            inside = match.pred_labels == label
            at = np.unravel_index(np.argmax(np.where(inside, prob, -1.0)), prob.shape)
            area, peak = int(inside.sum()), float(prob[at])
            for key in keys:
                groups[key][1].append(area)
                groups[key][2].append(peak)
            kind = KINDS[int(frame.kind[at])]
            if kind in ("sky", "terrain"):
                kind = f"near {KINDS[int(near[at])]}"
            under[kind] += 1
        hit_labels = {g for g, _ in match.pairs}
        for t in frame.info["targets"]:
            r, c = (int(round(v)) for v in t["centroid"])
            hit = int(match.gt_labels[r, c] in hit_labels)
            found[t["where"]][0] += hit
            found[t["where"]][1] += 1
            band = "peak < 0.1" if t["peak"] < 0.1 else "0.1-0.3" if t["peak"] < 0.3 else ">= 0.3"
            by_peak[band][0] += hit
            by_peak[band][1] += 1
    m = metrics.compute()
    out = {
        "model": ckpt["model"],
        "threshold": threshold,
        "protocol": protocol,
        "set": name,
        "Pd": None if m["Pd"] != m["Pd"] else round(m["Pd"], 2),
        "groups": {k: _summary(*groups[k]) for k in sorted(groups, key=_order)},
        "false_targets_on": dict(under.most_common()),
        "per_frame": groups["all"][0],
    }
    if m["n_gt_objects"]:
        out["Pd_by_place"] = {k: f"{hit}/{n}" for k, (hit, n) in found.items() if n}
        out["Pd_by_peak"] = {k: f"{hit}/{n}" for k, (hit, n) in by_peak.items() if n}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["na_irstd", "detector"])
    parser.add_argument("--sets", nargs="+", default=list(CLUTTER_SETS), choices=CLUTTER_SETS)
    parser.add_argument("--frames", type=int, help="frames per set (default: the quick check's)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    import torch

    from nairstd.operating import shipped_path
    from nairstd.train.checkpoint import load_model

    torch.set_num_threads(1)
    results = []
    for model_name in args.models:
        model, ckpt = load_model(shipped_path(model_name))
        for name in args.sets:
            n = args.frames or frame_counts("quick")[name]
            r = breakdown(model, ckpt, name, n)
            results.append(r)
            print(f"\n{model_name} (threshold {r['threshold']}, {r['protocol']}) on {name}"
                  + (f": Pd {r['Pd']} ({r.get('Pd_by_place')})" if r["Pd"] is not None else ""))  # fmt: skip
            for key, g in r["groups"].items():
                print(f"  {key:>10}: {g}")
            print(f"  false targets on: {r['false_targets_on']}")
            print(f"  per frame: {r['per_frame']}", flush=True)
            if "Pd_by_peak" in r:
                print(f"  detected by target peak: {r['Pd_by_peak']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
