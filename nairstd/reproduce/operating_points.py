"""Notebook 05, operating points: the Pd-false alarm curve of every method (`score --sweep`'s
curve) and the out-of-distribution check (nairstd.ood) for every model, including the shipped
ones (nairstd/pretrained).

Each method runs as `predict` runs it: a checkpoint under the protocol it was trained for (the
Table III runs: resize256; the shipped models: native), a classical method under resize256 as in
Table III. One pass per method computes its maps on every OOD set; the curve sweeps the
thresholds on the test-split maps, the OOD table reads every set at the method's own threshold
(0.5, or the one a shipped model records). Classical methods are swept on the test split only
(`OOD_CLASSICAL` are also run on the OOD sets: PSTNN and NRAM take minutes per 1920x1080 frame).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nairstd.baselines import BASELINE_INFO, CLASSICAL
from nairstd.data.index import DatasetIndex
from nairstd.isolation import structure_test, suppress_structure_ends
from nairstd.ood import OODScore, ood_sets
from nairstd.operating import operating_point
from nairstd.profiles import get_profile
from nairstd.protocols import RESIZE256
from nairstd.reproduce.parallel import map_in_workers
from nairstd.sweep import plot_sweeps, probability_maps, sweep
from nairstd.tables import write_table
from nairstd.train import RunResult

OOD_CLASSICAL = ("tophat", "mpcm")


def _display(name: str) -> str:
    return BASELINE_INFO.get(name, {"table_name": "Na-IRSTD" if name == "na_irstd" else name})[
        "table_name"
    ]


def shipped_models() -> dict[str, tuple[Any, dict]]:
    """{label: (model, checkpoint)} for every shipped model in nairstd/pretrained."""
    from nairstd.operating import shipped_path
    from nairstd.shipped import RECIPES
    from nairstd.train.checkpoint import load_model

    out = {}
    for name in RECIPES:
        path = shipped_path(name)
        if path.is_file():
            out[f"{_display(name)} (shipped)"] = load_model(path)
    return out


def method_models(
    runs: dict[str, RunResult], classical: list[str] | None
) -> dict[str, tuple[Any, dict | None]]:
    """{label: (model or classical function, checkpoint or None)} in table order."""
    methods: dict[str, tuple[Any, dict | None]] = {}
    for name in classical if classical is not None else list(CLASSICAL):
        methods[_display(name)] = (CLASSICAL[name], None)
    for name, run in runs.items():
        from nairstd.train.checkpoint import load_model

        methods[_display(name)] = load_model(run.best_checkpoint)
    methods.update(shipped_models())
    return methods


def _save_sets(sets: list, folder: Path) -> None:
    """Write the OOD sets as .npy files (read back by `_load_sets` in the workers)."""
    listing = []
    for i, (name, size, frames) in enumerate(sets):
        for j, (image, mask) in enumerate(frames):
            np.save(folder / f"{i:02d}_{j:05d}_image.npy", image)
            np.save(folder / f"{i:02d}_{j:05d}_mask.npy", mask)
        listing.append([name, size, len(frames)])
    (folder / "sets.json").write_text(json.dumps(listing))


def _load_sets(folder: Path) -> list:
    """The sets `_save_sets` wrote; each set's frames read from disk as the pass consumes them."""

    def frames(i: int, n: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for j in range(n):
            stem = folder / f"{i:02d}_{j:05d}"
            yield np.load(f"{stem}_image.npy"), np.load(f"{stem}_mask.npy")

    listing = json.loads((folder / "sets.json").read_text())
    return [(name, size, frames(i, n)) for i, (name, size, n) in enumerate(listing)]


def _pass_cost(label: str, ckpt: dict | None) -> float:
    """Relative seconds of one method's pass (notebook 05's printout, quick profile): orders the
    worker queue so the longest passes start first."""
    if ckpt is None:
        return 90.0 if label in map(_display, OOD_CLASSICAL) or label == "NRAM" else 10.0
    return 100.0 if "(shipped)" in label else 50.0


def _method_pass(
    label: str, model: Any, ckpt: dict | None, sets: list | str, test_only: bool
) -> tuple[str, list[dict], list[dict], list[dict], float]:
    """One method over every OOD set (`sets`, or the folder `_save_sets` wrote; `test_only`: the
    test set alone): (curve key, curve, sweep rows, OOD rows, seconds)."""
    start = time.perf_counter()
    if isinstance(sets, str):
        sets = _load_sets(Path(sets))
    protocol, threshold = operating_point(ckpt, None if ckpt else RESIZE256, None)
    prep = (ckpt or {}).get("preprocessing")
    structures = structure_test("auto", ckpt)  # e.g. the shipped na_irstd's isolation test
    curve_key, curve, sweep_rows, ood_rows = f"{label} [{protocol}]", [], [], []
    for set_name, size, frames in sets:
        if test_only and set_name != "test":
            continue
        if structures is not None:
            frames = list(frames)  # the test reads the images again (a worker's are a generator)
        pairs = probability_maps(model, frames, protocol, preprocessing=prep)
        images = [image for image, _ in frames] if structures else None
        if set_name == "test":
            curve = sweep(pairs, images=images, structures=structures)
            sweep_rows += [{"method": label, "protocol": protocol, **r} for r in curve]
        score = OODScore(threshold)
        for i, (prob, gt) in enumerate(pairs):
            if structures is not None:
                prob, _ = suppress_structure_ends(images[i], prob, threshold, structures)
            score.update(prob, gt)
        m = score.row()
        ood_rows.append(
            {
                "method": label,
                "protocol": protocol,
                "threshold": threshold,
                "set": set_name,
                "size": size,
                "frames": m["frames"],
                "Pd": m["Pd"],
                "Fa": m["Fa"],
                "false_targets_per_frame": m["fa_per_frame"],
                # in % of frames, on target-free sets only (the table keeps those columns)
                "frames_with_false": 100 * m["frames_with_false"] if not m["targets"] else None,
                "false_area_median": m["false_area_median"],
                "false_peak_median": m["false_peak_median"],
            }
        )
    return curve_key, curve, sweep_rows, ood_rows, time.perf_counter() - start


def operating_points(
    profile: str,
    runs: dict[str, RunResult],
    test: DatasetIndex,
    tables_dir: Path,
    figures_dir: Path,
    classical: list[str] | None = None,
    workers: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """(sweep rows, OOD rows, figure path); writes tables `pd_fa_sweep`, `ood_check` and the
    figure `pd_fa_curves.png`. `workers`: processes for the passes (None: the profile's)."""
    methods = method_models(runs, classical)
    workers = get_profile(profile).workers if workers is None else workers
    everywhere = set(map(_display, OOD_CLASSICAL))  # classical methods run on every set
    curves: dict[str, list[dict]] = {}
    sweep_rows, ood_rows = [], []
    with tempfile.TemporaryDirectory(prefix="nairstd-ood-") as folder:
        # One pass per method, the passes spread over worker processes (one per core). The OOD
        # frames (1.4 GB under quick) are generated once and read back from disk by each pass.
        sets: list | str = list(ood_sets(test, profile))
        if workers > 1 and len(methods) > 1:
            _save_sets(sets, Path(folder))
            sets = folder
        tasks = [
            (label, model, ckpt, sets, ckpt is None and label not in everywhere)
            for label, (model, ckpt) in methods.items()
        ]
        costs = [_pass_cost(label, ckpt) for label, (_, ckpt) in methods.items()]
        passes = map_in_workers(_method_pass, tasks, workers, costs, list(methods))
    for label, (curve_key, curve, sweeps_of, oods_of, seconds) in zip(methods, passes):
        curves[curve_key] = curve
        sweep_rows += sweeps_of
        ood_rows += oods_of
        print(f"{label}: {seconds:.0f} s", flush=True)
    sweeps = pd.DataFrame(sweep_rows)
    write_table(
        sweeps,
        tables_dir,
        "pd_fa_sweep",
        "Pd against false alarms over thresholds (test split)",
        [
            f"{test.name} test; fa_per_frame = false targets per frame, Fa in 1e-6",
            "each method under its own protocol (in brackets in the figure)",
        ],
        floatfmt=".3f",
    )
    figure = figures_dir / "pd_fa_curves.png"
    plot_sweeps(curves, figure, f"Pd against false alarms over thresholds, {test.name} test")
    ood = pd.DataFrame(ood_rows)
    values = {"false_targets_per_frame": "FT/frame", "frames_with_false": "% frames with FT"}
    values["Pd"] = "Pd"
    wide = ood.pivot_table(
        index=["method", "protocol", "threshold"],
        columns="set",
        values=list(values),
        sort=False,
    )
    order = {s: i for i, s in enumerate(dict.fromkeys(ood["set"]))}
    columns = sorted(wide.columns, key=lambda vs: (order[vs[1]], list(values).index(vs[0])))
    wide = wide[columns]
    wide.columns = [f"{s} {values[v]}" for v, s in columns]
    wide = wide.reset_index()
    counts = ", ".join(
        f"{s}: {n}" for s, n in ood.groupby("set", sort=False)["frames"].max().items()
    )
    notes = [
        f"profile {profile}; frames per set: {counts} (Profile.ood_frames)",
        f"sets from {test.name} TEST: `test` with targets (native size); `empty-*`: the same frames "
        "with their targets inpainted out, at native size and rescaled; `synthetic-640x512`, "
        "`synthetic-1920x1080`: the synthetic generator at that size (with targets); "
        "`synthetic-clutter`: target-free urban / road / skyline frames (street lamps, roof lines "
        "and roof-top plant, gantries, masts, vehicles against a dark graded sky; sensor "
        "artefacts) at 640x512, 1280x1024 and 1920x1080, 8- and 16-bit, and "
        "`synthetic-clutter-targets` the same with 1-4 point targets of 2-9 px "
        "(`python -m nairstd data clutter` writes both)",
        "FT/frame = false targets (unmatched predicted objects) per frame; % frames with FT (on "
        "target-free sets) = frames holding at least one; Pd in %; the false targets' median "
        "area and peak probability: table `ood_false_targets`",
        "each method runs as `predict` runs it: its checkpoint's protocol and threshold "
        "(Table III runs: resize256, 0.5; shipped: native, threshold chosen on SIRST val)",
        "classical methods on the OOD sets: " + ", ".join(OOD_CLASSICAL) + " only (PSTNN and "
        "NRAM take minutes per 1920x1080 frame on a CPU)",
    ]
    write_table(wide, tables_dir, "ood_check", "Out-of-distribution check", notes)
    character = ood[
        ["method", "set", "frames", "false_targets_per_frame", "frames_with_false"]
        + ["false_area_median", "false_peak_median"]
    ]
    write_table(
        character,
        tables_dir,
        "ood_false_targets",
        "What the false targets of the out-of-distribution check look like",
        [
            "per method and set: false targets per frame, % of frames with any (target-free sets "
            "only), the median area (px) and the median peak probability of the false targets",
            "users' real target-free urban / road frames (issue 23, shipped na_irstd at 0.55): "
            "3.0 per frame, 69 % of frames with any, median area 4 px, median peak 0.84",
        ],
    )
    return sweeps, ood, figure


__all__ = ["operating_points"]
