"""The benchmark commands (`python -m nairstd bench model|predict`), run small."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


# -- benchmark module ---------------------------------------------------------------------------------


def test_bench_models_smoke(capsys, monkeypatch):
    from nairstd.bench import bench_models, main

    monkeypatch.setenv("NAIRSTD_COMPILE_BACKEND", "eager")  # dynamo only: seconds, not a minute
    rows = bench_models(
        "tiny", ["na_irstd"], hw=128, batch=2, warmup=1, iters=2, train_steps=1, malloc_tuning=False
    )
    (row,) = rows
    assert row["variant"] == "na_irstd" and row["params_M"] > 0 and row["gflops"] > 0
    assert row["latency_ms"] > 0 and row["train_img_s"] > 0
    assert row["inject_k"] == "5/16"
    assert row["inject_ratio"] == pytest.approx(16 / 5, rel=1e-6)  # injection cost is linear in K
    assert "FLOPs = 2 x multiply-adds" in capsys.readouterr().out
    argv = "model --variants detector --hw 64 --batch 2 --iters 1 --train-steps 1 --json --no-malloc-tuning"
    main([*argv.split(), "--compile", "off"])
    assert '"variant": "detector"' in capsys.readouterr().out
    argv = "model --variants detector na_irstd --hw 64 --batch 2 --iters 1 --train-steps 1"
    main([*argv.split(), "--no-malloc-tuning", "--latency-batches", "1", "2"])
    out = capsys.readouterr().out
    assert "compiled_min_ms" in out and "na_irstd / detector latency, batch 2: eager" in out
    assert "compiled" in out.splitlines()[-1]


def test_bench_profile_ops(capsys, monkeypatch):
    from nairstd.bench import main

    monkeypatch.setenv("NAIRSTD_COMPILE_BACKEND", "eager")
    argv = "model --profile-ops --hw 64 --iters 1 --latency-batches 2 --no-malloc-tuning"
    assert main(argv.split()) == 0
    out = capsys.readouterr().out
    for stage in ("native branch (PDE+GPM)", "injection", "detector decoder", "op aten::"):
        assert stage in out
    assert "na_irstd / detector, batch 2, compiled:" in out


def test_bench_predict_runs(capsys, monkeypatch):
    from nairstd.bench import main

    # dynamo traces the model, the "eager" backend skips code generation (seconds, not a minute)
    monkeypatch.setenv("NAIRSTD_COMPILE_BACKEND", "eager")
    argv = ["predict", "--n", "2", "--sizes", "80x64", "64x48", "--modes", "eager", "compiled"]
    assert main(argv) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "80x64 na_irstd eager" in out and "64x48 na_irstd compiled" in out
    assert "MP/s" in out and "na_irstd: compiled forward is" in out


def test_bench_predict_onnxruntime_and_the_model_ratio(capsys):
    from nairstd.bench import main

    argv = "predict --n 2 --sizes 64x48 --model detector na_irstd --modes eager onnxruntime"
    assert main([*argv.split(), "--no-end-to-end"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "64x48 detector onnxruntime" in out and "na_irstd: onnxruntime forward is" in out
    assert "64x48 na_irstd / detector forward: eager" in out and ", onnxruntime " in out
