"""The paper's claims C1-C4, tested on our runs: effect sizes, intervals and a verdict.

Rule (written into every claim table and REPORT.md):
  effect  = mean over seeds of [metric(A, seed s) - metric(B, seed s)] on the same test images,
            where A is the arm the paper says is better and metric is a set-level metric
            (IoU = sum of intersections / sum of unions, SPEC §6; Top-K coverage for C4);
  interval = 95 % percentile bootstrap over test images: the images are resampled with
            replacement (the same resample for every arm and seed) and the effect recomputed;
  verdict = "reproduced" when the interval lies above 0 (the paper's direction), "not
            reproduced" when it lies below 0, "inconclusive" when it contains 0. A claim with
            several inequalities (C2, C3) is reproduced when all are, not reproduced when any
            is, inconclusive otherwise.
The bootstrap captures test-set sampling; seed-to-seed spread is shown beside it (per-seed
effects and their sign count), and the cells of the claim tables give mean ± std over seeds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nairstd.io import write_json

RULE = (
    "effect = mean over seeds of the paired difference (paper's better arm minus the other) of "
    "a set-level metric on the same test images; 95% percentile bootstrap interval over test "
    "images (one resample shared by all arms and seeds); reproduced = interval above 0, "
    "not reproduced = interval below 0, inconclusive = interval contains 0; a claim with "
    "several inequalities is reproduced only when all are"
)

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"

PerImage = dict[str, Sequence[float]]


def set_metric(per_image: PerImage, metric: str, idx: np.ndarray | None = None) -> float:
    """A set-level metric from per-image counts (evaluate_loader's `per_image`), on the images
    `idx` (a resample, repeats allowed; None: all)."""

    def col(name: str) -> np.ndarray:
        a = np.asarray(per_image[name], dtype=np.float64)
        return a if idx is None else a[idx]

    def ratio(num: np.ndarray, den: np.ndarray, scale: float = 100.0) -> float:
        d = den.sum()
        return float("nan") if d == 0 else scale * num.sum() / d

    if metric == "IoU":
        return ratio(col("intersection"), col("union"))
    if metric == "nIoU":
        inter, union = col("intersection"), col("union")
        per = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
        return float(100.0 * per.mean())
    if metric == "Pd":
        return ratio(col("n_matched"), col("n_gt"))
    if metric == "Fa":
        return ratio(col("fa_pixels"), col("pixels"), 1e6)
    if metric == "coverage":
        return ratio(col("selected_target"), col("target_patches"))
    raise ValueError(f"no set-level metric {metric!r}")


@dataclass
class Effect:
    """One inequality of a claim, A > B on a test set, measured over seeds."""

    better: str  # arm the paper says is better (A)
    worse: str  # the other arm (B)
    test_set: str
    metric: str
    effect: float  # mean over seeds of metric(A) - metric(B)
    low: float  # 95 % bootstrap interval
    high: float
    per_seed: list[float] = field(default_factory=list)
    n_images: int = 0
    verdict: str = INCONCLUSIVE

    @property
    def seeds_agreeing(self) -> int:
        return sum(1 for d in self.per_seed if d > 0)


def _arrays(per_seed: Sequence[PerImage]) -> list[dict[str, np.ndarray]]:
    return [{k: np.asarray(v, dtype=np.float64) for k, v in p.items()} for p in per_seed]


def _n_images(*arms: Sequence[PerImage]) -> int:
    sizes = {len(next(iter(p.values()))) for arm in arms for p in arm}
    if len(sizes) != 1:
        raise ValueError(f"arms were scored on different numbers of images: {sorted(sizes)}")
    return sizes.pop()


def bootstrap_effect(
    statistic: Callable[[np.ndarray | None], list[float]],
    n_images: int,
    n_boot: int = 2000,
    rng_seed: int = 0,
) -> tuple[list[float], float, float]:
    """(per-seed values on all images, 95 % interval of their mean) of `statistic(idx)`, which
    returns one value per seed on the images `idx` (None: all)."""
    per_seed = statistic(None)
    rng = np.random.default_rng(rng_seed)
    boots = np.array(
        [np.mean(statistic(rng.integers(0, n_images, n_images))) for _ in range(n_boot)]
    )
    boots = boots[np.isfinite(boots)]
    if not len(boots):
        return per_seed, float("nan"), float("nan")
    return per_seed, float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def paired_effect(
    better: Sequence[PerImage],
    worse: Sequence[PerImage],
    metric: str = "IoU",
    n_boot: int = 2000,
    rng_seed: int = 0,
    names: tuple[str, str, str] = ("A", "B", "test"),
) -> Effect:
    """Effect of A over B (one per-image dict per seed, in the same seed order) with its 95 %
    bootstrap interval over test images and a verdict (module docstring)."""
    if len(better) != len(worse) or not better:
        raise ValueError(
            f"need the same number (>= 1) of seeds per arm, got {len(better)}, {len(worse)}"
        )
    n = _n_images(better, worse)
    a_arm, b_arm = _arrays(better), _arrays(worse)

    def statistic(idx: np.ndarray | None) -> list[float]:
        return [
            set_metric(a, metric, idx) - set_metric(b, metric, idx) for a, b in zip(a_arm, b_arm)
        ]

    per_seed, low, high = bootstrap_effect(statistic, n, n_boot, rng_seed)
    return Effect(
        better=names[0],
        worse=names[1],
        test_set=names[2],
        metric=metric,
        effect=float(np.mean(per_seed)),
        low=low,
        high=high,
        per_seed=[float(d) for d in per_seed],
        n_images=n,
        verdict=verdict(low, high),
    )


def saturation_effect(
    at_k: Sequence[PerImage],
    at_max: Sequence[PerImage],
    threshold: float = 90.0,
    n_boot: int = 2000,
    rng_seed: int = 0,
    names: tuple[str, str, str] = ("K", "max K", "test"),
) -> Effect:
    """'K is near saturation': coverage(K) / coverage(max K) in %, minus `threshold` (so the
    verdict rule reads: reproduced when the ratio's interval lies above the threshold)."""
    n = _n_images(at_k, at_max)
    k_arm, max_arm = _arrays(at_k), _arrays(at_max)

    def statistic(idx: np.ndarray | None) -> list[float]:
        return [
            100.0 * set_metric(a, "coverage", idx) / set_metric(b, "coverage", idx) - threshold
            for a, b in zip(k_arm, max_arm)
        ]

    with np.errstate(divide="ignore", invalid="ignore"):
        per_seed, low, high = bootstrap_effect(statistic, n, n_boot, rng_seed)
    return Effect(
        better=f"coverage({names[0]}) / coverage({names[1]}) (%)",
        worse=f"{threshold:g}",
        test_set=names[2],
        metric="coverage ratio",
        effect=float(np.mean(per_seed)),
        low=low,
        high=high,
        per_seed=[float(d) for d in per_seed],
        n_images=n,
        verdict=verdict(low, high),
    )


def verdict(low: float, high: float) -> str:
    """The rule of the module docstring for one inequality (paper's direction = positive)."""
    if np.isfinite(low) and low > 0:
        return REPRODUCED
    if np.isfinite(high) and high < 0:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def combined_verdict(verdicts: Sequence[str]) -> str:
    """Several inequalities of one claim: all reproduced -> reproduced; any reversed -> not."""
    if verdicts and all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    if any(v == NOT_REPRODUCED for v in verdicts):
        return NOT_REPRODUCED
    return INCONCLUSIVE


@dataclass
class ClaimResult:
    """A claim on one test set: its inequalities, the paper's effect and our verdict."""

    claim: str  # "C1".."C4"
    statement: str  # the paper's claim in words
    test_set: str
    paper_effect: str  # the paper's effect size (from its tables), in words
    effects: list[Effect]
    seeds: list[int]
    budget: str
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return combined_verdict([e.verdict for e in self.effects])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = self.verdict
        d["rule"] = RULE
        return d


def format_effect(e: Effect) -> str:
    """'+2.31 [+0.40, +4.10] IoU, 3/3 seeds'"""
    return (
        f"{e.effect:+.2f} [{e.low:+.2f}, {e.high:+.2f}] {e.metric} "
        f"({e.better} - {e.worse}; {e.seeds_agreeing}/{len(e.per_seed)} seeds > 0)"
    )


def verdict_rows(results: Sequence[ClaimResult]) -> list[dict[str, Any]]:
    """Rows for a claim table: one per inequality, then the claim's verdict."""
    rows = []
    for r in results:
        for e in r.effects:
            rows.append(
                {
                    "claim": r.claim,
                    "test_set": r.test_set,
                    "comparison": f"{e.better} > {e.worse}",
                    "metric": e.metric,
                    "effect": e.effect,
                    "ci_low": e.low,
                    "ci_high": e.high,
                    "per_seed": ", ".join(f"{d:+.2f}" for d in e.per_seed),
                    "verdict": e.verdict,
                }
            )
        rows.append(
            {
                "claim": r.claim,
                "test_set": r.test_set,
                "comparison": "claim verdict",
                "metric": "",
                "effect": None,
                "ci_low": None,
                "ci_high": None,
                "per_seed": "",
                "verdict": r.verdict,
            }
        )
    return rows


def claims_dir(output_root: Path) -> Path:
    return output_root / "claims"


def save_claims(results: Sequence[ClaimResult], output_root: Path, claim: str) -> Path:
    """outputs/claims/<claim>.json: every test set's result of one claim (REPORT.md reads it)."""
    return write_json(claims_dir(output_root) / f"{claim}.json", [r.to_dict() for r in results])


def load_claims(output_root: Path) -> list[dict[str, Any]]:
    folder = claims_dir(output_root)
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("C*.json")):
        out.extend(json.loads(path.read_text()))
    return out


def claims_markdown(output_root: Path) -> list[str]:
    """The Claims section of REPORT.md: one row per claim and test set."""
    results = load_claims(output_root)
    lines = [
        "## Claims",
        "",
        "| claim | test set | our effect [95% interval], seeds | paper's effect | verdict |",
        "|---|---|---|---|---|",
    ]
    if not results:
        return [*lines, "| — | — | not computed (notebooks 02, 03, 06 write them) | — | — |", ""]
    for r in results:
        effects = "<br>".join(format_effect(Effect(**e)) for e in r["effects"])
        lines.append(
            f"| **{r['claim']}** {r['statement']} | {r['test_set']} | {effects} | "
            f"{r['paper_effect']} | **{r['verdict']}** |"
        )
    budgets = sorted({r["budget"] for r in results})
    seeds = sorted({len(r["seeds"]) for r in results})
    lines += [
        "",
        f"Rule: {RULE}.",
        "",
        f"Budget of every run in these comparisons: {'; '.join(budgets)}; seeds per arm: "
        f"{', '.join(map(str, seeds))}.",
        "",
    ]
    return lines


def paper_effect(
    reported_table: Any, column: str, better: str, worse: str, metric: str = "IoU"
) -> str:
    """The paper's effect of `better` over `worse` (values of `column`) across its datasets,
    e.g. '+2.61 to +12.96 IoU (4 datasets)'."""
    diffs = []
    for _, group in reported_table.groupby("dataset", sort=False):
        a = group.loc[group[column] == better, metric]
        b = group.loc[group[column] == worse, metric]
        if len(a) and len(b):
            diffs.append(float(a.iloc[0]) - float(b.iloc[0]))
    if not diffs:
        return "not reported"
    return f"{min(diffs):+.2f} to {max(diffs):+.2f} {metric} ({len(diffs)} datasets)"
