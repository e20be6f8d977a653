"""Sound comparisons: equal budgets in every table, the claim statistics computed by hand, the
over-seed summaries, the gamma parameter group, the baselines' own losses and determinism."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_toolbox_dataset

from nairstd.profiles import PROFILES, Budget, get_profile
from nairstd.reproduce import ablation_tables, arms, claims, main_tables
from nairstd.reproduce.common import budget_config
from nairstd.tables import mean_std_cells, over_seeds
from nairstd.train import train
from nairstd.train.sampling import planned_steps
from nairstd.train.stages import injection_gammas, param_groups

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------------
# One budget per table
# --------------------------------------------------------------------------------------------------
def _arm_total(profile: str, arm: str, n_train: int, table: str = "claims") -> tuple[int, list]:
    """Optimiser steps of every stage of an arm on a train split of `n_train` images, by the
    training loop's own rule (nairstd.train.sampling.planned_steps)."""
    configs = arms.arm_configs(profile, arm, "SIRST", seed=0, table=table)
    return sum(planned_steps(c, n_train)[1] for c in configs), configs


TABLE_ARMS = {
    "Table I": ["detector", "detector_ds2"],
    "Table IV": list(ablation_tables.BRANCH_ARMS),
    "Table V": list(ablation_tables.STAGE_ARMS),
    "Fig. 7": ["stage1_soft", "stage1_hard"],  # Stage 1 of the two-stage budget
}


@pytest.mark.parametrize("n_train", [100, 256, 1001])
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("table", list(TABLE_ARMS))
def test_every_arm_of_a_claim_table_gets_the_same_budget(profile, table, n_train):
    budget = get_profile(profile).claims
    totals = {}
    for arm in TABLE_ARMS[table]:
        total, configs = _arm_total(profile, arm, n_train)
        totals[arm] = total
        for c in configs:  # the paper's protocol: one image size and batch, whole images
            assert (c.image_size, c.batch_size) == (budget.image_size, budget.batch_size)
            assert c.crop_size == budget.crop_size
            assert c.protocol == "resize256"
    assert len(set(totals.values())) == 1, totals
    if budget.steps is not None:
        expected = budget.stage_share("1") if table == "Fig. 7" else budget.steps
        assert set(totals.values()) == {expected}
    else:  # an epoch budget: epochs x whole batches of this train split
        per_epoch = max(1, n_train // budget.batch_size)
        epochs = budget.stage_share("1") if table == "Fig. 7" else budget.total
        assert set(totals.values()) == {epochs * per_epoch}


def test_two_stage_runs_split_the_budget_and_find_their_stage1():
    total, (s1, s2) = _arm_total("quick", "two_stage_soft", 256)
    assert (s1.stage, s2.stage) == ("1", "2")
    assert (s1.max_steps, s2.max_steps) == (80, 240) and total == 320
    assert s1.label == s2.label == "soft"
    # Stage 2 looks its Stage 1 up by config: the same one notebook 03 trains.
    _, (stage1_arm,) = _arm_total("quick", "stage1_soft", 256)
    assert stage1_arm.hashed_fields() == s1.hashed_fields()


@pytest.mark.parametrize("profile", PROFILES)
def test_table3_gives_every_deep_method_the_same_budget(profile):
    steps = {}
    for name in [*main_tables.DEEP_BASELINES, main_tables.OURS]:
        if name == main_tables.OURS:
            configs = arms.arm_configs(profile, "two_stage_soft", "SIRST", 0, table="main")
        else:
            configs = [budget_config(profile, "one", "main", model=name, dataset="SIRST")]
        steps[name] = sum(planned_steps(c, 256)[1] for c in configs)
        assert all(c.loss == "paper" for c in configs)  # each method's own loss by default
    assert len(set(steps.values())) == 1, steps


def test_budget_rejects_nonsense():
    with pytest.raises(ValueError):
        Budget()
    with pytest.raises(ValueError):
        Budget(steps=10, epochs=10)
    with pytest.raises(ValueError):
        Budget(steps=10, stage1_share=1.0)
    assert Budget(epochs=2000).stage_share("1") == 500  # the paper's 500 + 1500


# --------------------------------------------------------------------------------------------------
# Claim statistics, by hand
# --------------------------------------------------------------------------------------------------
def _per_image(inter, union, **extra):
    return {"intersection": inter, "union": union, **extra}


def test_set_metric_by_hand():
    p = _per_image(
        [1, 3, 0],
        [2, 4, 0],
        n_matched=[1, 0, 0],
        n_gt=[1, 1, 0],
        fa_pixels=[0, 5, 0],
        pixels=[10, 10, 10],
    )
    assert claims.set_metric(p, "IoU") == pytest.approx(100 * 4 / 6)
    assert claims.set_metric(p, "nIoU") == pytest.approx(100 * (0.5 + 0.75 + 1.0) / 3)
    assert claims.set_metric(p, "Pd") == pytest.approx(50.0)
    assert claims.set_metric(p, "Fa") == pytest.approx(5 / 30 * 1e6)
    # a resample with repeats: images 1, 1, 0
    assert claims.set_metric(p, "IoU", np.array([1, 1, 0])) == pytest.approx(100 * 7 / 10)


def test_paired_effect_verdicts():
    rng = np.random.default_rng(1)
    union = rng.integers(20, 40, 50)
    worse = _per_image(union // 2, union)
    better = _per_image(union // 2 + 5, union)  # 5 more pixels on every image
    up = claims.paired_effect([better] * 3, [worse] * 3, "IoU", 300)
    exact = 100 * (better["intersection"].sum() - worse["intersection"].sum()) / union.sum()
    assert up.effect == pytest.approx(exact)
    assert 0 < up.low <= up.effect <= up.high
    assert up.verdict == claims.REPRODUCED and up.seeds_agreeing == 3
    down = claims.paired_effect([worse] * 3, [better] * 3, "IoU", 300)
    assert down.verdict == claims.NOT_REPRODUCED
    same = claims.paired_effect([worse] * 3, [worse] * 3, "IoU", 300)
    assert same.effect == 0 and same.verdict == claims.INCONCLUSIVE


def test_an_interval_that_straddles_zero_is_inconclusive():
    # +4 px on half the images, -4 px on the other half: effect exactly 0, both signs sampled.
    union = np.full(40, 30)
    worse = _per_image(np.full(40, 15), union)
    noisy = _per_image(15 + np.tile([4, -4], 20), union)
    mixed = claims.paired_effect([noisy] * 3, [worse] * 3, "IoU", 400)
    assert mixed.effect == pytest.approx(0.0)
    assert mixed.low < 0 < mixed.high
    assert mixed.verdict == claims.INCONCLUSIVE


def test_one_seed_of_three_carrying_the_whole_effect_is_not_reproduced():
    """Seeds 1 and 2 equal the other arm; seed 0 is +5 px on every image (+16.6 IoU). The
    image-only bootstrap read this as reproduced (every image resample keeps seed 0); resampling
    the seeds leaves it out in (2/3)^3 = 30 % of the resamples, so the interval reaches 0."""
    union = np.random.default_rng(2).integers(20, 40, 50)
    worse = _per_image(union // 2, union)
    better = _per_image(union // 2 + 5, union)
    e = claims.paired_effect([better, worse, worse], [worse, worse, worse], "IoU", 1000)
    seed0 = 100 * 5 * 50 / union.sum()
    assert e.per_seed == pytest.approx([seed0, 0.0, 0.0])
    assert e.effect == pytest.approx(seed0 / 3)
    assert e.low == pytest.approx(0.0, abs=1e-9)  # the 2.5th percentile: no seed-0 draw
    assert e.high > e.effect
    assert e.verdict == claims.INCONCLUSIVE and e.seeds_agreeing == 1


def test_fewer_than_three_seeds_is_inconclusive_whatever_the_interval():
    union = np.full(30, 30)
    worse = _per_image(np.full(30, 10), union)
    better = _per_image(np.full(30, 20), union)
    two = claims.paired_effect([better] * 2, [worse] * 2, "IoU", 200)
    assert two.low > 0 and two.verdict == claims.INCONCLUSIVE
    assert "2 seed(s)" in two.reason and "2 seed(s)" in claims.format_effect(two)


def test_undefined_resamples_are_counted_not_dropped():
    # One image of 20 holds the only target: a resample without it has no union (IoU undefined).
    inter, union = np.zeros(20, int), np.zeros(20, int)
    inter[0], union[0] = 3, 4
    a = _per_image(inter, union)
    b = _per_image(inter * 0, union)
    e = claims.paired_effect([a] * 3, [b] * 3, "IoU", 500)
    # P(image 0 not drawn) = (19/20)^20 = 36 %: far above the 1 % tolerated.
    assert 0.25 * 500 < e.n_undefined < 0.47 * 500
    assert e.verdict == claims.INCONCLUSIVE and "undefined on" in e.reason
    # An effect undefined on every image says so instead of "+nan [+nan, +nan]".
    empty = _per_image(np.zeros(5, int), np.zeros(5, int))
    none = claims.paired_effect([empty] * 3, [empty] * 3, "IoU", 50)
    text = claims.format_effect(none)
    assert "nan" not in text and text.startswith("not computed")


def test_arms_are_paired_by_image_name():
    a = {**_per_image([1, 1], [2, 2]), "stem": ["x", "y"]}
    b = {**_per_image([1, 1], [2, 2]), "stem": ["x", "z"]}
    with pytest.raises(ValueError, match="different test images.*'y'.*'z'"):
        claims.paired_effect([a] * 3, [b] * 3)
    assert claims.paired_effect([a] * 3, [a] * 3).effect == 0


def test_paired_effect_needs_matching_arms():
    a = _per_image([1, 1], [2, 2])
    with pytest.raises(ValueError, match="seeds"):
        claims.paired_effect([a], [a, a])
    with pytest.raises(ValueError, match="numbers of images"):
        claims.paired_effect([a], [_per_image([1], [2])])


def test_saturation_effect_is_the_ratio_minus_the_threshold():
    k5 = {"selected_target": [9, 9], "target_patches": [10, 10]}
    k16 = {"selected_target": [10, 10], "target_patches": [10, 10]}
    e = claims.saturation_effect([k5] * 3, [k16] * 3, 90.0, 100)
    assert e.effect == pytest.approx(0.0)  # 90 % of saturation exactly: inconclusive edge
    assert e.verdict == claims.INCONCLUSIVE
    k5_low = {"selected_target": [5, 5], "target_patches": [10, 10]}
    low = claims.saturation_effect([k5_low] * 3, [k16] * 3, 90.0, 100)
    assert low.effect == pytest.approx(-40.0) and low.verdict == claims.NOT_REPRODUCED


def test_combined_verdict():
    r, n, i = claims.REPRODUCED, claims.NOT_REPRODUCED, claims.INCONCLUSIVE
    assert claims.combined_verdict([r, r]) == r
    assert claims.combined_verdict([r, i]) == i
    assert claims.combined_verdict([r, n, i]) == n
    assert claims.combined_verdict([]) == i


def test_claims_round_trip_into_the_report(tmp_path):
    effect = claims.paired_effect(
        [_per_image([3, 3], [4, 4])] * 3, [_per_image([1, 1], [4, 4])] * 3
    )
    result = claims.ClaimResult("C9", "A beats B", "TOY", "+1 IoU", [effect], [0], "10 steps")
    claims.save_claims([result], tmp_path, "C9", "quick")
    saved = json.loads((tmp_path / "claims" / "C9.json").read_text())
    assert saved[0]["verdict"] == effect.verdict and saved[0]["rule"] == claims.RULE
    assert saved[0]["profile"] == "quick" and saved[0]["commit"]
    text = "\n".join(claims.claims_markdown(tmp_path, "quick"))
    assert "**C9**" in text and "+50.00" in text and "10 steps" in text
    rows = claims.verdict_rows([result])
    assert rows[-1]["comparison"] == "claim verdict"


def test_claims_of_another_profile_do_not_reach_the_report(tmp_path):
    effect = claims.paired_effect(
        [_per_image([3, 3], [4, 4])] * 3, [_per_image([1, 1], [4, 4])] * 3
    )
    old = claims.ClaimResult("C9", "A beats B", "TOY", "+1 IoU", [effect], [0], "4 steps")
    claims.save_claims([old], tmp_path, "C9", "smoke")
    text = "\n".join(claims.claims_markdown(tmp_path, "quick"))
    assert "+50.00" not in text and "not computed" in text
    assert "Left out (made by another profile): C9 (profile smoke" in text
    # A file written before claims were stamped (no profile) is left out too.
    unstamped = {**old.to_dict(), "claim": "C8"}
    (tmp_path / "claims" / "C8.json").write_text(json.dumps([unstamped]))
    assert "C8 (profile unrecorded" in "\n".join(claims.claims_markdown(tmp_path, "quick"))


def test_paper_effect_reads_the_reported_table():
    paper = pd.DataFrame(
        {"dataset": ["a", "a", "b", "b"], "setting": ["x", "y", "x", "y"], "IoU": [5, 3, 9, 8]}
    )
    assert claims.paper_effect(paper, "setting", "x", "y") == "+1.00 to +2.00 IoU (2 datasets)"


# --------------------------------------------------------------------------------------------------
# mean ± std over seeds
# --------------------------------------------------------------------------------------------------
def test_over_seeds_and_cells():
    rows = pd.DataFrame(
        {"arm": ["a", "a", "a", "b"], "seed": [0, 1, 2, 0], "IoU": [1.0, 2.0, 3.0, 5.0]}
    )
    table = over_seeds(rows, ["arm"], ["IoU"])
    a = table[table["arm"] == "a"].iloc[0]
    assert (a["IoU"], a["IoU_std"], a["n_seeds"]) == (2.0, 1.0, 3)
    b = table[table["arm"] == "b"].iloc[0]
    assert np.isnan(b["IoU_std"]) and b["n_seeds"] == 1
    shown = mean_std_cells(table, ["IoU"])
    assert shown["IoU"].tolist() == ["2.00 ± 1.00", "5.00"]
    assert "IoU_std" not in shown


# --------------------------------------------------------------------------------------------------
# Training: the gamma group, the baselines' own losses, determinism
# --------------------------------------------------------------------------------------------------
def test_gamma_gets_its_own_group_and_is_logged():
    from nairstd.train import profile_config
    from nairstd.zoo import build_model

    model = build_model("na_irstd", "tiny")
    config = profile_config("smoke", "2", model="na_irstd", lr_gamma=0.02)
    groups = param_groups(model, config)
    gammas = {id(p) for p in injection_gammas(model)}
    assert len(gammas) == 4
    named = {g["name"]: g for g in groups}
    assert {id(p) for p in named["gamma"]["params"]} == gammas and named["gamma"]["lr"] == 0.02
    for name in ("main", "native"):
        assert not gammas & {id(p) for p in named[name]["params"]}
    # every trainable parameter is in exactly one group
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert injection_gammas(build_model("detector", "tiny")) == []


@pytest.fixture
def tiny_set(tmp_path, monkeypatch):
    root = write_toolbox_dataset(tmp_path / "data", "TINY", n=8, size=(32, 32))
    monkeypatch.setenv("NAIRSTD_DATA", str(root.parent))
    return root


def _tiny_config(**fields):
    from nairstd.train import profile_config

    base = dict(
        dataset="TINY",
        image_size=32,
        crop_size=0,
        batch_size=2,
        max_steps=3,
        epochs=2,
        val_every=1,
        size="tiny",
    )
    return profile_config("quick", "one", **{**base, **fields})


def test_baselines_train_with_their_own_loss(tiny_set, tmp_path, monkeypatch):
    from nairstd.baselines.acm import ACM

    calls = []
    own = ACM.loss

    def spy(self, out, target):
        calls.append(isinstance(out, dict))
        return own(self, out, target)

    monkeypatch.setattr(ACM, "loss", spy)
    train(_tiny_config(model="acm"), runs_dir=tmp_path / "a", progress=False, log=lambda s: None)
    assert calls and all(calls)  # every step, with the auxiliary outputs
    calls.clear()
    train(
        _tiny_config(model="acm", loss="bce_dice"),
        runs_dir=tmp_path / "b",
        progress=False,
        log=lambda s: None,
    )
    assert not calls


def test_the_same_quick_config_trained_twice_gives_identical_metrics(tiny_set, tmp_path):
    config = _tiny_config(model="na_irstd", label="soft")
    a = train(config, runs_dir=tmp_path / "a", progress=False, log=lambda s: None)
    b = train(config, runs_dir=tmp_path / "b", progress=False, log=lambda s: None)
    assert not a.reused and not b.reused and a.run_id == b.run_id
    val_a, val_b = dict(a.metrics["val"]), dict(b.metrics["val"])
    val_a.pop("seconds"), val_b.pop("seconds")
    assert val_a == val_b
    # the weights and the per-epoch training losses too (real-valued: any drift would show)
    wa = torch.load(a.run_dir / "best.pt", weights_only=True)["state_dict"]
    wb = torch.load(b.run_dir / "best.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    log_a, log_b = pd.read_csv(a.run_dir / "log.csv"), pd.read_csv(b.run_dir / "log.csv")
    pd.testing.assert_frame_equal(log_a.drop(columns="time_s"), log_b.drop(columns="time_s"))
    assert any(c.startswith("gamma_") for c in log_a.columns)


def test_parallel_jobs_train_once_and_cache_evals(tiny_set, tmp_path, monkeypatch, capsys):
    from nairstd.reproduce.parallel import EvalSpec, Job, merge_jobs, run_jobs

    monkeypatch.setenv("NAIRSTD_OUTPUTS", str(tmp_path / "out"))
    config = _tiny_config(model="detector")
    jobs = merge_jobs([Job(config, [EvalSpec("TINY")], "x"), Job(config, [], "x")])
    assert len(jobs) == 1
    run_jobs(jobs, "smoke", workers=1)
    out = capsys.readouterr().out
    assert "x: trained" in out
    run = train(config, progress=False, log=lambda s: None)
    assert run.reused and list((run.run_dir / "evals").glob("TINY_test_*.json"))
    run_jobs(jobs, "smoke", workers=2)  # everything cached: no worker, no training
    out = capsys.readouterr().out
    assert "1 run(s) found finished" in out and "trained" not in out


def test_claim_sets_fall_back_and_name_what_is_missing(tiny_set, capsys, monkeypatch):
    monkeypatch.setattr(arms, "get_profile", lambda p: SimpleNamespace(claim_sets=("TINY", "nope")))
    assert arms.claim_sets("quick") == ["TINY"]
    assert "nope not found" in capsys.readouterr().out


def test_table3_names_runs_that_did_not_learn():
    def run(losses, iou):
        log = pd.DataFrame({"epoch": range(1, len(losses) + 1), "loss": losses})
        return SimpleNamespace(log=log, metrics={"val": {"IoU": iou}})

    notes = main_tables._convergence_notes(
        {
            "flat": run([0.999, 0.998], 10.5),  # SoftIoU stuck near 1
            "blind": run([2.1, 0.26], 0.0),  # loss falls, predicts nothing
            "fine": run([1.0, 0.4], 55.0),
        }
    )
    assert len(notes) == 1
    assert "flat (training loss 0.999 -> 0.998" in notes[0] and "blind" in notes[0]
    assert "fine" not in notes[0]
    assert main_tables._convergence_notes({"fine": run([1.0, 0.4], 55.0)}) == []
