"""Verdicts, convergence marks and validation curves from the committed reference bundles.

REPORT.md's Claims section shows, beside this run's verdicts, the reference budget's: computed
here from `results/reference/` (nairstd.reproduce.reference) by the same rule
(nairstd.reproduce.claims.RULE), on current bundles only. A stale bundle (its configs differ from
what the current code plans) is listed, never used.

Convergence is shown, not assumed: each arm's best validation value at the reference budget
(mean over seeds) is compared with its seed trained at twice the budget. An arm whose doubled
run gains more than STILL_IMPROVING_IOU val IoU points (Top-K coverage points for a Stage-1 arm)
is marked "still improving" beside every verdict that uses it; an arm without a doubled run is
marked "convergence unchecked".
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nairstd.baselines import DEEP_BASELINES
from nairstd.profiles import get_profile
from nairstd.reproduce.claims import ClaimResult, paired_effect, saturation_effect
from nairstd.reproduce.reference import (
    PROFILE,
    SATURATION_K,
    STILL_IMPROVING_IOU,
    bundle_test,
    load_bundles,
    stale_fields,
)

STATEMENTS = {
    "C1": "native-resolution input beats 2x downsampled input (Table I)",
    "C2": "patch-based 2D+1D branch > dense CNN branch > no native branch (Table IV)",
    "C3": "two-stage training with soft labels is the best of four settings (Table V)",
    "C4": "soft labels give higher Top-K coverage than hard labels, and K = 5 is near "
    "saturation (Fig. 7)",
    "C5": "Na-IRSTD is the best of all methods on every test set (Table III)",
}
PAIRS = {
    "C1": [("detector", "detector_ds2")],
    "C2": [("two_stage_soft", "dense_cnn"), ("dense_cnn", "detector")],
    "C3": [
        ("two_stage_soft", "one_stage_hard"),
        ("two_stage_soft", "one_stage_soft"),
        ("two_stage_soft", "two_stage_hard"),
    ],
    "C4": [("stage1_soft", "stage1_hard")],  # coverage; plus K=5 vs K=16 saturation
    # C5: Na-IRSTD against the strongest deep baseline on each test set, chosen per test set
    # (`_c5_pairs`); these are the arms it chooses from.
    "C5": [("two_stage_soft", name) for name in DEEP_BASELINES],
}


def paper_effects() -> dict[str, str]:
    """The paper's effect of each claim, from its reported tables (as the notebooks write it)."""
    from nairstd.reproduce.claims import paper_effect
    from nairstd.tables import reported

    t1 = reported("table1_downsampling")
    t4 = reported("table4_branch_ablation")
    t5 = reported("table5_stage_label")
    t5 = t5.assign(setting=t5["training"] + "_" + t5["label"])
    others = ("one_stage_hard", "one_stage_soft", "two_stage_hard")
    return {
        "C1": paper_effect(t1, "setting", "native", "downsample2x"),
        "C2": f"patch - dense: {paper_effect(t4, 'variant', 'patch_2d1d', 'dense_cnn')}; "
        f"dense - none: {paper_effect(t4, 'variant', 'dense_cnn', 'none')}",
        "C3": "; ".join(
            f"vs {o}: {paper_effect(t5, 'setting', 'two_stage_soft', o)}" for o in others
        ),
        "C4": "plot only (Fig. 7): soft above hard; coverage flattens by K = 5",
        "C5": "best on every dataset (Table III)",
    }


SATURATION_PCT = 90.0


def current_bundles(root: Path | None = None) -> tuple[list[dict], list[dict]]:
    """(current, stale) bundles; each stale one carries `stale` = the fields that differ."""
    current, stale = [], []
    for b in load_bundles(root):
        fields = stale_fields(b)
        if fields:
            stale.append({**b, "stale": fields})
        else:
            current.append(b)
    return current, stale


def _index(bundles: list[dict]) -> dict[tuple[str, str, int], dict]:
    """(dataset, arm, scale) -> {seed: bundle}."""
    out: dict[tuple[str, str, int], dict] = defaultdict(dict)
    for b in bundles:
        u = b["unit"]
        out[(u["dataset"], u["arm"], u["scale"])][u["seed"]] = b
    return out


def _test_sets(bundles: dict[int, dict]) -> list[str]:
    first = next(iter(bundles.values()))
    return sorted({k.removeprefix("test_").split("_K")[0] for k in first["test"]})


def convergence(bundles: list[dict]) -> pd.DataFrame:
    """One row per (dataset, arm): best val value at 1x (mean, std, seeds), the doubled run's,
    the gain and the mark."""
    by = _index(bundles)
    rows = []
    for (dataset, arm, scale), seeds in sorted(by.items()):
        if scale != 1:
            continue
        best = [b["best_val"][-1]["best"] for b in seeds.values()]
        best = [v for v in best if v is not None]
        metric = next(iter(seeds.values()))["best_val"][-1]["metric"]
        doubled = by.get((dataset, arm, 2), {})
        x2 = next(iter(doubled.values()))["best_val"][-1]["best"] if doubled else None
        x2_seed = next(iter(doubled)) if doubled else None
        # The doubled run is compared with its own seed at 1x (same init and data order).
        base = seeds.get(x2_seed, {}).get("best_val", [{}])[-1].get("best") if doubled else None
        gain = None if x2 is None or base is None else x2 - base
        if gain is None:
            mark = "convergence unchecked (no doubled run)"
        elif gain > STILL_IMPROVING_IOU:
            mark = f"still improving (+{gain:.2f} val {metric} at 2x)"
        else:
            mark = f"converged ({gain:+.2f} val {metric} at 2x)"
        rows.append(
            {
                "trained_on": dataset,
                "arm": arm,
                "metric": metric,
                "best_val_mean": float(np.mean(best)) if best else None,
                "best_val_std": float(np.std(best, ddof=1)) if len(best) > 1 else None,
                "seeds": len(best),
                "best_val_x2": x2,
                "gain_x2": gain,
                "mark": mark,
            }
        )
    return pd.DataFrame(rows)


def _per_seed(
    by: dict, dataset: str, arm: str, test_set: str, seeds: list[int], k: int | None = None
) -> list[dict[str, Any]]:
    return [bundle_test(by[(dataset, arm, 1)][s], test_set, k)["per_image"] for s in seeds]


def reference_claims(bundles: list[dict], n_boot: int | None = None) -> list[dict[str, Any]]:
    """Claim rows (ClaimResult dicts with `marks`) from current bundles: for each claim, training
    set and test set whose arms all have bundles, on the seeds every arm has."""
    n_boot = n_boot or get_profile(PROFILE).bootstrap
    by = _index(bundles)
    marks = {(r.trained_on, r.arm): r.mark for r in convergence(bundles).itertuples()}
    paper = paper_effects() if bundles else {}
    out = []
    for claim, pairs in PAIRS.items():
        arms = sorted({a for pair in pairs for a in pair})
        for dataset in sorted({d for d, _, _ in by}):
            have = [by.get((dataset, a, 1), {}) for a in arms]
            seeds = sorted(set.intersection(*(set(h) for h in have)))
            if not seeds:
                continue
            for test_set in _test_sets(have[0]):
                effects, notes = [], []
                chosen = pairs
                if claim == "C5":
                    chosen, strongest = _c5_pairs(by, dataset, test_set, seeds)
                    notes.append(strongest)
                for better, worse in chosen:
                    metric = "coverage" if claim == "C4" else "IoU"
                    effects.append(
                        paired_effect(
                            _per_seed(by, dataset, better, test_set, seeds),
                            _per_seed(by, dataset, worse, test_set, seeds),
                            metric,
                            n_boot,
                            names=(better, worse, test_set),
                        )
                    )
                if claim == "C4":
                    effects.append(
                        saturation_effect(
                            _per_seed(by, dataset, "stage1_soft", test_set, seeds),
                            _per_seed(by, dataset, "stage1_soft", test_set, seeds, SATURATION_K),
                            SATURATION_PCT,
                            n_boot,
                            names=("K=5", f"K={SATURATION_K}", test_set),
                        )
                    )
                first = by[(dataset, arms[0], 1)][seeds[0]]
                result = ClaimResult(
                    claim=claim,
                    statement=STATEMENTS[claim],
                    test_set=f"{test_set} (trained on {dataset})",
                    paper_effect=paper[claim],
                    effects=effects,
                    seeds=seeds,
                    budget=first["budget"],
                    notes=notes,
                )
                row = result.to_dict()
                row["marks"] = [f"{a}: {marks.get((dataset, a), '?')}" for a in arms]
                row["commits"] = sorted(
                    {by[(dataset, a, 1)][s]["commit"] for a in arms for s in seeds}
                )
                out.append(row)
    return out


def _c5_pairs(
    by: dict, dataset: str, test_set: str, seeds: list[int]
) -> tuple[list[tuple[str, str]], str]:
    """C5's one comparison on a test set: Na-IRSTD against the baseline with the highest test
    IoU there, averaged over the seeds (as the quick verdict: the hardest opponent, so choosing
    it on test can only make the claim harder), and the note that names it."""
    ours, others = PAIRS["C5"][0][0], [worse for _, worse in PAIRS["C5"]]

    def mean_iou(arm: str) -> float:
        return float(
            np.mean([bundle_test(by[(dataset, arm, 1)][s], test_set)["IoU"] for s in seeds])
        )

    ious = {arm: mean_iou(arm) for arm in others}
    best = max(ious, key=ious.get)
    return [(ours, best)], (
        f"strongest other trained method on this test set: {best} "
        f"(mean test IoU over the seeds {ious[best]:.2f})"
    )


def reference_notes(current: list[dict], stale: list[dict], figure: str | None) -> list[str]:
    """The lines under the Claims table about the reference column: bundles, commits,
    machines, stale bundles, convergence and the curves figure."""
    if not current and not stale:
        return [
            "reference: no result bundle committed yet (`python -m nairstd reference run` "
            "writes them into results/reference/).",
            "",
        ]
    budgets = sorted({b["budget"] for b in current if b["unit"]["scale"] == 1})
    commits = sorted({b["commit"] for b in current})
    machines = sorted(
        {f"{b['machine']['cpu']} ({b['machine']['cpu_count']} CPUs)" for b in current}
    )
    lines = [
        f"reference: {len(current)} current bundle(s) in results/reference/; budget "
        f"{'; '.join(budgets) or 'n/a'} (and one seed per arm at twice it); trained at commit(s) "
        f"{', '.join(commits)}; machine(s): {'; '.join(machines)}. Verdicts use the seeds that "
        "every arm of a claim has; a claim without bundles for all its arms reads 'not computed'.",
        "",
    ]
    from nairstd.train.runs import code_version

    older = [b for b in current if b.get("code_version") not in (None, code_version())]
    if older:
        lines += [
            f"{len(older)} current bundle(s) were trained by another version of the training "
            f"code (its hash differs from today's {code_version()}; their configs match today's, "
            "so they count; their commits say what changed).",
            "",
        ]
    if stale:
        listed = "; ".join(
            f"{b['unit']['dataset']}/{b['unit']['arm']}/seed{b['unit']['seed']}"
            f"{'-x2' if b['unit']['scale'] > 1 else ''} ({', '.join(b['stale'])})"
            for b in stale
        )
        lines += [f"Stale bundles (not used; their config differs from today's): {listed}.", ""]
    conv = convergence(current)
    if len(conv):
        lines += [
            "Convergence (reference budget): best validation value, mean ± std over seeds, and "
            "the first seed at twice the budget:",
            "",
            "| trained on | arm | val metric | best at 1x | seeds | best at 2x | gain | mark |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in conv.itertuples():
            # pandas stores a missing value (one seed: no std; no doubled run) as NaN, not None
            std = "" if pd.isna(r.best_val_std) else f" ± {r.best_val_std:.2f}"
            x2 = "—" if pd.isna(r.best_val_x2) else f"{r.best_val_x2:.2f}"
            gain = "—" if pd.isna(r.gain_x2) else f"{r.gain_x2:+.2f}"
            mean = "—" if pd.isna(r.best_val_mean) else f"{r.best_val_mean:.2f}{std}"
            lines.append(
                f"| {r.trained_on} | {r.arm} | {r.metric} | {mean} | {r.seeds} | {x2} | {gain} "
                f"| {r.mark} |"
            )
        lines.append("")
    if figure:
        lines += [f"![Validation curves of the reference runs]({figure})", ""]
    return lines


def curves_figure(bundles: list[dict], out_path: Path) -> Path | None:
    """Each arm's validation curve (IoU, or coverage for Stage 1) over its seeds, and the
    doubled run dashed, one panel per training set and arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = _index(bundles)
    keys = sorted({(d, a) for d, a, _ in by})
    if not keys:
        return None
    cols = min(4, len(keys))
    rows = int(np.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax, (dataset, arm) in zip(axes.flat, keys):
        for scale in (1, 2):
            for seed, b in sorted(by.get((dataset, arm, scale), {}).items()):
                log = pd.read_csv(Path(b["folder"]) / "log.csv")
                metric = b["best_val"][-1]["metric"]
                col = f"val_{metric}"
                if col not in log or "step" not in log:
                    continue
                pts = log.dropna(subset=[col])
                ax.plot(
                    pts["step"],
                    pts[col],
                    ls="--" if scale == 2 else "-",
                    label=f"seed {seed}" + (" (2x)" if scale == 2 else ""),
                )
                ax.set_ylabel(f"val {metric}")
        ax.set_title(f"{arm} ({dataset})", fontsize=9)
        ax.set_xlabel("optimiser step")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def reference_section(output_root: Path, root: Path | None = None) -> tuple[list, list[str]]:
    """(claim rows, note lines) for REPORT.md; writes the curves figure into outputs/figures/."""
    current, stale = current_bundles(root)
    figure = curves_figure(current, output_root / "figures" / "reference_curves.png")
    rel = f"figures/{figure.name}" if figure else None
    return reference_claims(current), reference_notes(current, stale, rel)
