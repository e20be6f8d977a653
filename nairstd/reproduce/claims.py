"""The paper's claims C1-C5, tested on our runs: effect sizes, intervals and a verdict.

Rule (written into every claim table and REPORT.md):
  effect  = mean over seeds of [metric(A, seed s) - metric(B, seed s)] on the same test images
            (paired by image name), where A is the arm the paper says is better and metric is a
            set-level metric (IoU = sum of intersections / sum of unions, SPEC §6; Top-K
            coverage for C4);
  interval = 95 % percentile interval of a hierarchical bootstrap that covers both sources of
            variation: each resample draws the seeds with replacement, then the test images with
            replacement (one image resample shared by every arm and seed), and recomputes the
            effect as the mean over the drawn seeds;
  verdict = "reproduced" when the interval lies above 0 (the paper's direction), "not
            reproduced" when it lies below 0, "inconclusive" when it contains 0, when an arm has
            fewer than MIN_SEEDS seeds, or when the metric is undefined (e.g. no target in the
            resampled images) on more than 1 % of the resamples. A claim with several
            inequalities (C2, C3) is reproduced when all are, not reproduced when any is,
            inconclusive otherwise.
Because seeds are resampled, an effect that one seed of three carries alone does not read
"reproduced": about (2/3)^3 = 30 % of the resamples hold no draw of that seed.
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
    "a set-level metric on the same test images, paired by name; 95% interval = percentile "
    "interval of a hierarchical bootstrap (seeds resampled with replacement, then test images, "
    "one image resample shared by all arms and seeds); reproduced = interval above 0, "
    "not reproduced = interval below 0, inconclusive = interval contains 0, fewer than 3 seeds "
    "per arm, or the metric undefined on over 1% of resamples; a claim with several "
    "inequalities is reproduced only when all are"
)
MIN_SEEDS = 3  # a verdict other than "inconclusive" needs at least this many seeds per arm
MAX_UNDEFINED = 0.01  # resamples where the metric is undefined (NaN) tolerated in an interval

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
    n_undefined: int = 0  # bootstrap resamples on which the metric was undefined (NaN)
    n_boot: int = 0
    reason: str = ""  # why the verdict is inconclusive regardless of the interval, if so

    @property
    def seeds_agreeing(self) -> int:
        return sum(1 for d in self.per_seed if d > 0)


def _arrays(per_seed: Sequence[PerImage]) -> list[dict[str, np.ndarray]]:
    return [
        {k: np.asarray(v, dtype=np.float64) for k, v in p.items() if k != "stem"} for p in per_seed
    ]


def _n_images(*arms: Sequence[PerImage]) -> int:
    """The number of test images every arm and seed was scored on; they must be the same
    images in the same order (checked by name when the counts carry names)."""
    sizes = {len(next(v for k, v in p.items() if k != "stem")) for arm in arms for p in arm}
    if len(sizes) != 1:
        raise ValueError(f"arms were scored on different numbers of images: {sorted(sizes)}")
    names = [tuple(p["stem"]) for arm in arms for p in arm if p.get("stem")]
    if names and any(n != names[0] for n in names):
        first_diff = next(n for n in names if n != names[0])
        where = next(i for i, (a, b) in enumerate(zip(names[0], first_diff)) if a != b)
        raise ValueError(
            f"arms were scored on different test images: image {where} is "
            f"{names[0][where]!r} in one and {first_diff[where]!r} in another"
        )
    return sizes.pop()


@dataclass
class Interval:
    """What a bootstrap returns: per-seed values on all images, the 95 % interval of their
    mean, and how many resamples gave an undefined (NaN) value."""

    per_seed: list[float]
    low: float
    high: float
    n_undefined: int
    n_boot: int


def bootstrap_effect(
    statistic: Callable[[np.ndarray | None], Sequence[float]],
    n_images: int,
    n_boot: int = 2000,
    rng_seed: int = 0,
) -> Interval:
    """Hierarchical bootstrap of the mean over seeds of `statistic(idx)`, which returns one
    value per seed on the images `idx` (None: all). Each resample draws the seeds with
    replacement, then the images (shared by every seed and arm). Resamples with an undefined
    value are counted, not silently dropped."""
    per_seed = [float(v) for v in statistic(None)]
    n_seeds = len(per_seed)
    rng = np.random.default_rng(rng_seed)
    boots = np.empty(n_boot)
    for b in range(n_boot):
        seeds = rng.integers(0, n_seeds, n_seeds)
        values = np.asarray(statistic(rng.integers(0, n_images, n_images)), dtype=np.float64)
        boots[b] = values[seeds].mean()
    finite = boots[np.isfinite(boots)]
    n_undefined = int(n_boot - len(finite))
    if not len(finite):
        return Interval(per_seed, float("nan"), float("nan"), n_undefined, n_boot)
    low, high = np.percentile(finite, [2.5, 97.5])
    return Interval(per_seed, float(low), float(high), n_undefined, n_boot)


def _effect(
    interval: Interval, n_images: int, better: str, worse: str, test_set: str, metric: str
) -> Effect:
    """An Effect with its verdict (module docstring), and the reason when the rule forces
    'inconclusive' whatever the interval."""
    per_seed = interval.per_seed
    mean = float(np.mean(per_seed)) if per_seed else float("nan")
    reason = ""
    if len(per_seed) < MIN_SEEDS:
        reason = f"{len(per_seed)} seed(s) per arm, a verdict needs {MIN_SEEDS}"
    elif not np.isfinite(mean):
        reason = "metric undefined on the test images"
    elif interval.n_undefined > MAX_UNDEFINED * interval.n_boot:
        reason = (
            f"metric undefined on {interval.n_undefined} of {interval.n_boot} bootstrap resamples"
        )
    return Effect(
        better=better,
        worse=worse,
        test_set=test_set,
        metric=metric,
        effect=mean,
        low=interval.low,
        high=interval.high,
        per_seed=per_seed,
        n_images=n_images,
        verdict=INCONCLUSIVE if reason else verdict(interval.low, interval.high),
        n_undefined=interval.n_undefined,
        n_boot=interval.n_boot,
        reason=reason,
    )


def paired_effect(
    better: Sequence[PerImage],
    worse: Sequence[PerImage],
    metric: str = "IoU",
    n_boot: int = 2000,
    rng_seed: int = 0,
    names: tuple[str, str, str] = ("A", "B", "test"),
) -> Effect:
    """Effect of A over B (one per-image dict per seed, in the same seed order) with its 95 %
    hierarchical bootstrap interval (seeds, then test images) and a verdict (module docstring)."""
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

    interval = bootstrap_effect(statistic, n, n_boot, rng_seed)
    return _effect(interval, n, names[0], names[1], names[2], metric)


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
        interval = bootstrap_effect(statistic, n, n_boot, rng_seed)
    return _effect(
        interval,
        n,
        f"coverage({names[0]}) / coverage({names[1]}) (%)",
        f"{threshold:g}",
        names[2],
        "coverage ratio",
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
    """'+2.31 [+0.40, +4.10] IoU (A - B; 3/3 seeds > 0)'; an undefined effect says so."""
    if not np.isfinite(e.effect):
        return f"not computed: {e.reason or 'metric undefined'} ({e.better} - {e.worse})"
    interval = f"[{e.low:+.2f}, {e.high:+.2f}]" if np.isfinite(e.low) else "[interval undefined]"
    text = (
        f"{e.effect:+.2f} {interval} {e.metric} "
        f"({e.better} - {e.worse}; {e.seeds_agreeing}/{len(e.per_seed)} seeds > 0)"
    )
    return f"{text}; {e.reason}" if e.reason else text


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


def save_claims(
    results: Sequence[ClaimResult], output_root: Path, claim: str, profile: str = ""
) -> Path:
    """outputs/claims/<claim>.json: every test set's result of one claim (REPORT.md reads it),
    stamped with the profile and code commit that made it."""
    from nairstd.paths import git_commit

    commit = git_commit()
    rows = [{**r.to_dict(), "profile": profile, "commit": commit} for r in results]
    return write_json(claims_dir(output_root) / f"{claim}.json", rows)


def load_claims(output_root: Path, profile: str | None = None) -> list[dict[str, Any]]:
    """Saved claim results; with `profile`, only those that profile made (a file left by
    another profile, or by a run before claims were stamped, is not this run's evidence)."""
    folder = claims_dir(output_root)
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("C*.json")):
        out.extend(json.loads(path.read_text()))
    if profile is not None:
        out = [r for r in out if r.get("profile") == profile]
    return out


def left_out_claims(output_root: Path, profile: str) -> list[str]:
    """'C2 (profile smoke, commit abc)' for each saved claim another profile made."""
    return sorted(
        {
            f"{r['claim']} (profile {r.get('profile') or 'unrecorded'}, commit "
            f"{r.get('commit') or 'unrecorded'})"
            for r in load_claims(output_root)
            if r.get("profile") != profile
        }
    )


def _cell(r: dict[str, Any] | None) -> tuple[str, str]:
    """(effects, verdict) cells of one claim row, or 'not computed'."""
    if r is None:
        return "not computed", "—"
    effects = "<br>".join(format_effect(Effect(**e)) for e in r["effects"])
    marks = r.get("marks") or []
    verdict_cell = f"**{r['verdict']}**" + "".join(f"<br>{m}" for m in marks)
    return effects, verdict_cell


def claims_markdown(
    output_root: Path,
    profile: str | None = None,
    reference: Sequence[dict[str, Any]] = (),
    reference_notes: Sequence[str] = (),
) -> list[str]:
    """The Claims section of REPORT.md: one row per claim and test set, with two verdict
    columns: this run's (`profile`) and the reference budget's (from the committed bundles,
    nairstd.reproduce.reference_report), each with its effect, interval and seeds."""
    results = load_claims(output_root, profile)
    label = profile or "this run"
    lines = [
        "## Claims",
        "",
        f"| claim | test set | {label}: effect [95% interval], seeds | {label} verdict | "
        "reference: effect [95% interval], seeds | reference verdict | paper's effect |",
        "|---|---|---|---|---|---|---|",
    ]
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        rows.setdefault((r["claim"], r["test_set"]), {})["run"] = r
    for r in reference:
        rows.setdefault((r["claim"], r["test_set"]), {})["ref"] = r
    if not rows:
        lines.append("| — | — | not computed (notebooks 02, 03, 06 write them) | — | — | — | — |")
    for (claim, test_set), pair in sorted(rows.items()):
        any_r = pair.get("run") or pair["ref"]
        run_effects, run_verdict = _cell(pair.get("run"))
        ref_effects, ref_verdict = _cell(pair.get("ref"))
        lines.append(
            f"| **{claim}** {any_r['statement']} | {test_set} | {run_effects} | {run_verdict} | "
            f"{ref_effects} | {ref_verdict} | {any_r['paper_effect']} |"
        )
    lines += ["", f"Rule: {RULE}.", ""]
    if results:
        budgets = sorted({r["budget"] for r in results})
        seeds = sorted({len(r["seeds"]) for r in results})
        commits = sorted({r.get("commit") or "unrecorded" for r in results})
        lines += [
            f"{label}: every run's budget: {'; '.join(budgets)}; seeds per arm: "
            f"{', '.join(map(str, seeds))}; claims computed at commit {', '.join(commits)}.",
            "",
        ]
    if profile is not None:
        others = left_out_claims(output_root, profile)
        if others:
            lines += [f"Left out (made by another profile): {'; '.join(others)}.", ""]
    lines += [*reference_notes]
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
