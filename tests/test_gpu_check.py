"""scripts/gpu_check.sh's Python module, on the CPU path with tiny caps (no GPU is needed)."""

from __future__ import annotations

import json

from conftest import write_toolbox_dataset

from nairstd.gpu_check import main


def test_gpu_check_cpu_path(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NAIRSTD_COMPILE_BACKEND", "eager")  # dynamo only: seconds, not a minute
    write_toolbox_dataset(tmp_path, "TOY", n=6, size=(40, 48))
    out = tmp_path / "check.json"
    argv = [
        "--device", "cpu", "--dataset", "TOY", "--data-root", str(tmp_path), "--size", "tiny",
        "--epochs1", "1", "--epochs2", "1", "--epoch-steps", "1", "--val-limit", "2",
        "--batch-size", "2", "--image-size", "64", "--workers", "0", "--bench-sizes", "tiny",
        "--bench-batches", "1", "2", "--bench-iters", "1", "--bench-warmup", "1",
        "--compile-sizes", "tiny",
        "--runs-dir", str(tmp_path / "runs"), "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["device"] == "cpu" and not doc["skipped"]
    s1, s2 = doc["phases"]["stage1"], doc["phases"]["stage2"]
    assert s1["steps"] == 1 and s2["steps"] == 1 and s1["train_images_per_s"] > 0
    assert len(s1["losses"]["loss"]) == 1 and s2["losses"]["loss"][0] > 0
    bench = doc["phases"]["bench"]
    assert {(r["variant"], r["batch"], r["compiled"]) for r in bench} == {
        (v, b, c) for v in ("detector", "na_irstd") for b in (1, 2) for c in (False, True)
    }
    assert all(r["compile_s"] > 0 for r in bench if r["compiled"])
    assert all(r["latency_ms"] > 0 and r["peak_memory_mb"] > 0 for r in bench)
    assert "stage1: 1 epochs" in capsys.readouterr().out


def test_gpu_check_refuses_missing_cuda(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--device", "cuda"]) == 2
    assert "error: --device cuda" in capsys.readouterr().err


def test_gpu_check_refuses_an_out_it_did_not_write_before_running(tmp_path, capsys, monkeypatch):
    """--out is checked before minutes of GPU time: a folder, a missing folder or any file that
    is not an earlier report is one error line, and nothing runs or is overwritten."""
    import nairstd.gpu_check as gpu_check

    monkeypatch.setattr(gpu_check, "run_check", lambda args: (_ for _ in ()).throw(AssertionError))
    users = tmp_path / "results.json"
    users.write_text('{"mine": 1}')
    cases = [(users, "not an earlier gpu_check report"), (tmp_path, "is a folder")]
    cases.append((tmp_path / "nowhere" / "c.json", "does not exist"))
    for out, why in cases:
        assert main(["--device", "cpu", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --out {out}: ") and why in err, err
    assert users.read_text() == '{"mine": 1}'
    # An earlier report is replaced.
    users.write_text(json.dumps({"phases": {}, "total_s": 1.0, "skipped": []}))
    monkeypatch.setattr(
        gpu_check, "run_check", lambda args: {"phases": {}, "total_s": 2.0, "skipped": []}
    )
    assert main(["--device", "cpu", "--out", str(users)]) == 0
    assert json.loads(users.read_text())["total_s"] == 2.0
