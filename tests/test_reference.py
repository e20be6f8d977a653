"""The reference budget (issue 21): its plan, its result bundles, the verdicts and convergence
marks read from them, and the defects fixed on the way (each test failed before its fix)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_toolbox_dataset

from nairstd.profiles import Budget, get_profile
from nairstd.reproduce import arms, claims, reference, reference_report
from nairstd.reproduce.reference import Unit

pytestmark = pytest.mark.usefixtures("one_thread")


def test_reference_profile_is_the_issue_budget():
    budget = get_profile("reference").claims
    assert budget.steps == 3200 and budget.batch_size == 8 and budget.crop_size is None
    assert (budget.stage_share("1"), budget.stage_share("2")) == (800, 2400)  # 1:3
    assert len(get_profile("reference").seeds) >= 3
    configs = Unit("SIRST", "two_stage_soft", 0, scale=2).configs()
    assert [c.max_steps for c in configs] == [1600, 4800]


def test_plan_orders_sets_claims_seeds_then_doubled_and_dedupes():
    units = reference.plan_units(["C2", "C3"], seeds=[0, 1])
    names = [u.name for u in units]
    assert len(names) == len(set(names))  # two_stage_soft is in C2 and C3: once
    assert names[:3] == [
        "SIRST/detector/seed0",
        "SIRST/dense_cnn/seed0",
        "SIRST/two_stage_soft/seed0",
    ]
    doubled = [u for u in units if u.scale == 2]
    assert {u.seed for u in doubled} == {0} and units[-len(doubled) :] == doubled
    c1 = reference.plan_units(["C1"], seeds=[0], doubled=False)
    assert [u.name for u in c1] == [
        "SIRST/detector/seed0",
        "SIRST/detector_ds2/seed0",
        "synthetic-nudt/detector/seed0",
        "synthetic-nudt/detector_ds2/seed0",
    ]
    with pytest.raises(ValueError, match="unknown claim"):
        reference.plan_units(["C9"])


def test_plan_runs_the_deep_baselines_last():
    """A plain `reference run` (every claim) reaches C1-C4's doubled runs before C5's baseline
    units, which cost days on a CPU."""
    from nairstd.baselines import DEEP_BASELINES

    units = reference.plan_units(seeds=[0, 1])
    is_baseline = [u.arm in DEEP_BASELINES for u in units]
    first_baseline = is_baseline.index(True)
    assert not any(is_baseline[:first_baseline]) and all(is_baseline[first_baseline:])
    assert any(u.scale == 2 for u in units[:first_baseline])  # C1-C4's doubled runs come first
    baselines = units[first_baseline:]
    assert [u.scale for u in baselines] == sorted(u.scale for u in baselines)  # 1x, then 2x
    assert Unit("SIRST", "two_stage_soft", 0) in units[:first_baseline]  # C5's own arm is cheap


# --------------------------------------------------------------------------------------------------
# Bundles made by hand: verdicts, staleness, convergence
# --------------------------------------------------------------------------------------------------
def _fake_bundle(root: Path, unit: Unit, inter, union, best: float, **over) -> Path:
    folder = unit.folder(root)
    folder.mkdir(parents=True)
    stems = [f"img{i}" for i in range(len(inter))]
    per_image = {
        "stem": stems,
        "intersection": list(map(int, inter)),
        "union": list(map(int, union)),
    }
    (folder / "test_TOY.json").write_text(json.dumps({"IoU": 0.0, "per_image": per_image}))
    steps = np.arange(1, 6) * 100 * unit.scale
    curve = best - np.linspace(5, 0, 5)
    (folder / "log.csv").write_text(
        "epoch,step,val_IoU\n"
        + "".join(f"{i},{s},{v}\n" for i, (s, v) in enumerate(zip(steps, curve)))
    )
    bundle = {
        "unit": dataclasses.asdict(unit),
        "budget": unit.budget().describe(),
        "configs": [c.to_dict() for c in unit.configs()],
        "commit": "abc1234",
        "machine": {"cpu": "toy CPU", "cpu_count": 2},
        "train_time_s": [60.0],
        "best_val": [{"metric": "IoU", "best": best}],
        "test": {"test_TOY": {"IoU": 0.0}},
        **over,
    }
    (folder / "bundle.json").write_text(json.dumps(bundle))
    return folder


def _c1_bundles(root: Path, carried_by_one_seed: bool, x2_best: float = 60.5) -> None:
    union = np.random.default_rng(0).integers(20, 40, 40)
    for seed in range(3):
        plus = 5 if (seed == 0 or not carried_by_one_seed) else 0
        _fake_bundle(root, Unit("TOY", "detector", seed), union // 2 + plus, union, 60.0)
        _fake_bundle(root, Unit("TOY", "detector_ds2", seed), union // 2, union, 55.0)
    _fake_bundle(root, Unit("TOY", "detector", 0, 2), union // 2, union, x2_best)


def test_reference_verdicts_count_the_seeds(tmp_path):
    _c1_bundles(tmp_path / "all", carried_by_one_seed=False)
    _c1_bundles(tmp_path / "one", carried_by_one_seed=True)
    rows = {
        name: reference_report.reference_claims(reference.load_bundles(tmp_path / name), 400)
        for name in ("all", "one")
    }
    (c1_all,) = [r for r in rows["all"] if r["claim"] == "C1"]
    (c1_one,) = [r for r in rows["one"] if r["claim"] == "C1"]
    assert c1_all["verdict"] == claims.REPRODUCED and c1_all["seeds"] == [0, 1, 2]
    assert c1_one["verdict"] == claims.INCONCLUSIVE
    assert c1_one["test_set"] == "TOY (trained on TOY)"
    # C2-C4 have no bundles for their arms: no row (the report reads "not computed").
    assert {r["claim"] for r in rows["all"]} == {"C1"}


def test_c5_plans_every_deep_baseline_and_meets_the_strongest(tmp_path):
    """C5 at the reference budget: Na-IRSTD and each deep baseline, same budget, their own
    recipes; the verdict pairs Na-IRSTD with the baseline whose mean test IoU over the seeds is
    the highest on that test set (the hardest opponent), and needs every arm's bundles."""
    from nairstd.baselines import DEEP_BASELINES

    units = reference.plan_units(["C5"], seeds=[0], doubled=False)
    assert [u.arm for u in units] == ["two_stage_soft", *DEEP_BASELINES]
    (config,) = Unit("SIRST", "dnanet", 0).configs()
    assert (config.model, config.max_steps, config.crop_size, config.batch_size) == (
        "dnanet",
        3200,
        None,
        8,
    )
    assert (config.loss, config.optim) == ("paper", "official")  # its paper's loss, its optimiser
    union = np.random.default_rng(1).integers(20, 40, 40)
    # IoU per arm: ours 0.6; dnanet 0.55 (the strongest baseline), the others 0.3-0.5.
    share = {"two_stage_soft": 0.6, "dnanet": 0.55, "acm": 0.5, "isnet": 0.3}
    for seed in range(3):
        for arm in ["two_stage_soft", *DEEP_BASELINES]:
            inter = (union * share.get(arm, 0.4)).astype(int)
            _fake_bundle(tmp_path, Unit("TOY", arm, seed), inter, union, 50.0)
            path = Unit("TOY", arm, seed).folder(tmp_path) / "test_TOY.json"
            result = json.loads(path.read_text())
            result["IoU"] = 100.0 * inter.sum() / union.sum()
            path.write_text(json.dumps(result))
    rows = reference_report.reference_claims(reference.load_bundles(tmp_path), 200)
    (c5,) = [r for r in rows if r["claim"] == "C5"]
    assert c5["seeds"] == [0, 1, 2] and len(c5["effects"]) == 1
    assert "dnanet" in json.dumps(c5["effects"][0]) and "acm" not in json.dumps(c5["effects"][0])
    assert any("strongest other trained method on this test set: dnanet" in n for n in c5["notes"])
    assert c5["verdict"] == claims.REPRODUCED  # +5 IoU on every image and seed
    # One baseline without its bundles: no C5 row (the report reads "not computed").
    import shutil

    shutil.rmtree(tmp_path / "TOY" / "rpcanet")
    rows = reference_report.reference_claims(reference.load_bundles(tmp_path), 200)
    assert "C5" not in {r["claim"] for r in rows}


def test_convergence_marks(tmp_path):
    _c1_bundles(tmp_path, carried_by_one_seed=False, x2_best=61.5)  # +1.5 val IoU at 2x
    conv = reference_report.convergence(reference.load_bundles(tmp_path)).set_index("arm")
    assert conv.loc["detector", "gain_x2"] == pytest.approx(1.5)
    assert conv.loc["detector", "mark"].startswith("still improving (+1.50")
    assert conv.loc["detector_ds2", "mark"] == "convergence unchecked (no doubled run)"
    (row,) = reference_report.reference_claims(reference.load_bundles(tmp_path), 100)
    assert "detector: still improving (+1.50 val IoU at 2x)" in row["marks"]


def test_a_stale_bundle_is_listed_and_not_used(tmp_path):
    _c1_bundles(tmp_path, carried_by_one_seed=False)
    path = tmp_path / "TOY" / "detector" / "seed1" / "bundle.json"
    bundle = json.loads(path.read_text())
    bundle["configs"][0]["max_steps"] = 320  # trained on another budget
    path.write_text(json.dumps(bundle))
    current, stale = reference_report.current_bundles(tmp_path)
    assert [b["unit"]["seed"] for b in stale] == [1] and stale[0]["stale"] == ["max_steps"]
    (row,) = reference_report.reference_claims(current, 100)
    assert row["seeds"] == [0, 2]  # the seeds every arm has, among current bundles
    assert row["verdict"] == claims.INCONCLUSIVE  # 2 seeds: no verdict
    notes = "\n".join(reference_report.reference_notes(current, stale, None))
    assert "Stale bundles" in notes and "TOY/detector/seed1 (max_steps)" in notes
    assert reference.pending([Unit("TOY", "detector", 1)], tmp_path) == [Unit("TOY", "detector", 1)]


def test_report_shows_both_verdict_columns(tmp_path):
    _c1_bundles(tmp_path / "results", carried_by_one_seed=False)
    out = tmp_path / "outputs"
    rows, notes = reference_report.reference_section(out, tmp_path / "results")
    text = "\n".join(claims.claims_markdown(out, "quick", rows, notes))
    header = next(line for line in text.splitlines() if line.startswith("| claim"))
    assert "quick verdict" in header and "reference verdict" in header
    row = next(line for line in text.splitlines() if line.startswith("| **C1**"))
    assert "| not computed | — |" in row and "**reproduced**" in row  # quick not run here
    assert (out / "figures" / "reference_curves.png").is_file()
    assert "| TOY | detector | IoU | 60.00 ± 0.00 | 3 | 60.50 | +0.50 | converged" in text
    # no doubled run: dashes, never "nan" (pandas stores the missing values as NaN)
    assert "| TOY | detector_ds2 | IoU | 55.00 ± 0.00 | 3 | — | — | convergence unchecked" in text
    assert "nan" not in text.lower()


# --------------------------------------------------------------------------------------------------
# A real unit, end to end on a toy dataset (4 optimiser steps)
# --------------------------------------------------------------------------------------------------
def test_run_reference_writes_a_complete_bundle_and_resumes(tmp_path, monkeypatch):
    data = write_toolbox_dataset(tmp_path / "data", "tinyset", n=8, size=(64, 64)).parent
    tiny = Budget(steps=4, batch_size=2, crop_size=32, val_every=1)
    monkeypatch.setattr(
        Unit, "budget", lambda self: dataclasses.replace(tiny, steps=4 * self.scale)
    )
    monkeypatch.setitem(reference.CLAIM_ARMS, "C1", (("detector",), ("tinyset",)))
    kw = dict(
        claims=["C1"],
        workers=1,
        seeds=[0],
        root=str(tmp_path / "results"),
        data_root=str(data),
        runs_dir=str(tmp_path / "runs"),
    )
    lines = reference.run_reference(**kw)
    assert lines[0] == "[reference: 2 unit(s) planned, 2 to run]"
    (bundle,) = [b for b in reference.load_bundles(tmp_path / "results") if b["unit"]["scale"] == 1]
    folder = Path(bundle["folder"])
    assert sorted(p.name for p in folder.iterdir()) == [
        "bundle.json",
        "log.csv",
        "test_tinyset.json",
    ]
    assert not list(folder.parent.glob(".tmp-*"))  # the temporary folder was renamed
    assert bundle["steps"] == [4] and bundle["machine"]["cpu"] and bundle["commit"]
    assert bundle["best_val"][0]["metric"] == "IoU"
    test = json.loads((folder / "test_tinyset.json").read_text())
    assert len(test["per_image"]["stem"]) == test["n_images"] == len(test["per_image"]["union"])
    assert not any(p.suffix == ".pt" for p in folder.iterdir())  # no checkpoint in a bundle
    assert reference.stale_fields(bundle) == []
    # A second call finds both bundles current and trains nothing.
    assert reference.run_reference(**kw) == ["[reference: 2 unit(s) planned, 0 to run]"]


# --------------------------------------------------------------------------------------------------
# Defects of issue 21
# --------------------------------------------------------------------------------------------------
def test_train_arms_reads_back_the_configs_it_trained(monkeypatch):
    """Notebook 03/04 with size="base" trained base models and scored tiny ones."""
    trained_sizes, read_sizes = [], []
    monkeypatch.setattr(
        arms, "run_jobs", lambda jobs, *a, **k: trained_sizes.extend(j.config.size for j in jobs)
    )
    monkeypatch.setattr(arms, "train", lambda c, **k: read_sizes.append(c.size) or object())
    monkeypatch.setattr(arms, "test_sets", lambda d, r=None: [])
    arms.train_arms("smoke", ["detector"], ["TOY"], seeds=(0,), size="base")
    assert trained_sizes == ["base"] and read_sizes == ["base"]


def test_run_ids_and_eval_cache_change_with_the_training_code(tmp_path, monkeypatch):
    from nairstd.data.index import find_dataset
    from nairstd.reproduce.common import eval_cache
    from nairstd.train import runs
    from nairstd.train.config import TrainConfig

    data = write_toolbox_dataset(tmp_path, "tinyset", n=6)
    index = find_dataset(str(data))
    config = TrainConfig(dataset=str(data))
    assert len(runs.code_version()) == 16  # the real one: a content hash of CODE_PARTS
    before = (
        runs.run_id(config, index),
        eval_cache(tmp_path, index, "test", "resize256", "smoke")[0],
    )
    monkeypatch.setattr(runs, "code_version", lambda: "0123456789abcdef")
    import nairstd.reproduce.common as common

    monkeypatch.setattr(common, "code_version", lambda: "0123456789abcdef")
    after = runs.run_id(config, index), eval_cache(tmp_path, index, "test", "resize256", "smoke")[0]
    assert before[0] != after[0] and before[1] != after[1]


def test_throughput_measures_the_real_loop(tmp_path):
    """`reference throughput`: a fresh one-thread process trains a few steps and times them."""
    from nairstd.reproduce import throughput

    data = write_toolbox_dataset(tmp_path / "data", "tinyset", n=16, size=(32, 32)).parent
    (row,) = throughput.bench_train(
        ["detector_ds2"], "tinyset", steps=4, warmup=1, malloc="off", data_root=str(data)
    )
    assert row["model"] == "detector_ds2" and row["steps_timed"] == 2
    assert row["img_s"] > 0 and row["malloc_tuned"] is False
    assert "| detector_ds2 |" in throughput.format_table([row])
    with pytest.raises(ValueError, match="2 timed steps"):
        throughput.bench_train(["detector"], steps=3, warmup=2)


def test_reference_cli_refuses_unknown_rows_and_claims(capsys):
    from conftest import one_error_line

    from nairstd.cli import main

    assert main(["reference", "throughput", "--models", "nope"]) == 2
    assert "unknown rows ['nope']" in one_error_line(capsys)
    assert main(["reference", "status", "--claims", "C9"]) == 2
    assert "unknown claim 'C9'" in one_error_line(capsys)


def test_a_field_added_later_at_its_default_does_not_make_a_bundle_stale(tmp_path):
    """Bundles made before TrainConfig.optim existed (its default keeps the old behaviour) stay
    current; one whose value differs from the default does not."""
    _c1_bundles(tmp_path, carried_by_one_seed=False)
    path = tmp_path / "TOY" / "detector" / "seed0" / "bundle.json"
    bundle = json.loads(path.read_text())
    for config in bundle["configs"]:
        config.pop("optim")
    assert reference.stale_fields(bundle) == []
    bundle["configs"][0]["optim"] = "common"
    assert reference.stale_fields(bundle) == ["optim"]


def test_sigterm_stops_the_workers_too(tmp_path):
    """`reference run` stopped by SIGTERM (or Ctrl-C) ends its worker processes: before, they
    trained on, orphaned."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    data = write_toolbox_dataset(tmp_path / "data", "tinyset", n=8, size=(64, 64)).parent
    script = tmp_path / "long_reference.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import dataclasses
            from nairstd.profiles import Budget
            from nairstd.reproduce import reference
            from nairstd.reproduce.reference import Unit
            long = Budget(steps=100000, batch_size=2, crop_size=32, val_every=1000)
            Unit.budget = lambda self: long
            reference.CLAIM_ARMS["C1"] = (("detector", "detector_ds2"), ("tinyset",))
            reference.run_reference(["C1"], workers=2, seeds=[0], doubled=False,
                root={str(tmp_path / "results")!r}, data_root={str(data)!r},
                runs_dir={str(tmp_path / "runs")!r})
            """
        )
    )
    # The spawned workers do not see the patch: they train the real 3200-step budget on the toy
    # set, which keeps them busy well past the signal.
    proc = subprocess.Popen([sys.executable, str(script)], cwd=os.getcwd())
    try:
        children: list[str] = []
        for _ in range(120):  # wait for both workers to start
            time.sleep(0.5)
            out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
            children = out.stdout.split()
            if len(children) >= 3:  # two workers and the resource tracker
                break
        assert len(children) >= 2, "the workers did not start"
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        time.sleep(2)
        alive = [c for c in children if os.path.exists(f"/proc/{c}") and _running(c)]
        assert not alive, f"workers still running after SIGTERM: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()


def _running(pid: str) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"
