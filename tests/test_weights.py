"""Published weights in our harness: import-weights, checkpoint preprocessing, official rows."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, write_toolbox_dataset

from nairstd.cli import main
from nairstd.data.preprocess import checkpoint_preprocessing, normalize_image, resize_input
from nairstd.reproduce.official_weights import official_weights_rows
from nairstd.reproduce.peer_metrics import binarise, peer_metrics
from nairstd.train.checkpoint import load_model, model_checkpoint
from nairstd.weights import MAPPINGS
from nairstd.zoo import build_model

SHIPPED = (REPO / ".." / "shared" / "weights" / "rpcanet-sirst" / "RPCANet.pkl").resolve()

# Our rpcanet names -> the official RPCANet9 names (the inverse of MAPPINGS["rpcanet"]).
TO_THEIRS = (
    (r"stages\.(\d+)\.bem\.(.+)", r"decos.\1.lowrank.convs.\2"),
    (r"stages\.(\d+)\.tem\.(.+)", r"decos.\1.sparse.convs.\2"),
    (r"stages\.(\d+)\.irm\.(.+)", r"decos.\1.merge.mapping.\2"),
    (r"stages\.(\d+)\.eps", r"decos.\1.sparse.epsilon"),
)


pytestmark = pytest.mark.usefixtures("one_thread")


def theirs(name: str) -> str:
    for pattern, replacement in TO_THEIRS:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, replacement, name)
    raise AssertionError(f"no inverse rule for {name}")


def fake_official(path: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict in the official RPCANet naming, from a seeded `rpcanet base` build."""
    torch.manual_seed(seed)
    state = {theirs(k): v.clone() for k, v in build_model("rpcanet", "base").state_dict().items()}
    torch.save(state, path)
    return state


def fixed_input() -> torch.Tensor:
    return torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))


def check_round_trip(src: Path, out: Path, state: dict[str, torch.Tensor]) -> None:
    assert main(["import-weights", "rpcanet", str(src), "--out", str(out)]) == 0
    ckpt = torch.load(out, weights_only=True)  # the written checkpoint is safe to load
    mapping = MAPPINGS["rpcanet"]
    assert len(ckpt["state_dict"]) == len(state)
    for key, value in state.items():
        assert torch.equal(ckpt["state_dict"][mapping.target(key)], value), key
    assert ckpt["preprocessing"]["normalize"] == "unit"
    assert ckpt["preprocessing"]["input_size"] == 256
    assert ckpt["imported"]["licence"] and ckpt["imported"]["source"]
    model, _ = load_model(out)
    x = fixed_input()
    with torch.inference_mode():
        y = model(x)
    assert torch.isfinite(y).all()
    with torch.no_grad():
        model.stages[5].tem[0].weight.mul_(1.5)  # perturb one tensor
        y2 = model(x)
    assert not torch.allclose(y, y2)


def test_shipped_rpcanet_weights_convert_exactly(tmp_path):
    if not SHIPPED.is_file():
        pytest.skip(f"official RPCANet weights not found at {SHIPPED} (read-only input)")
    state = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    assert len(state) == 462
    check_round_trip(SHIPPED, tmp_path / "rpcanet.pt", state)
    ckpt = torch.load(tmp_path / "rpcanet.pt", weights_only=True)
    assert "MIT" in ckpt["imported"]["licence_text"]  # LICENSE beside the file travels along


def test_generated_official_layout_converts_exactly(tmp_path):
    state = fake_official(tmp_path / "theirs.pkl")
    check_round_trip(tmp_path / "theirs.pkl", tmp_path / "ours.pt", state)


def test_mismatching_state_dict_names_first_bad_tensor(tmp_path, capsys):
    state = fake_official(tmp_path / "good.pkl")
    bad = dict(state)
    bad["decos.2.sparse.convs.0.weight"] = torch.zeros(16, 1, 3, 3)
    torch.save(bad, tmp_path / "bad.pkl")
    out = tmp_path / "out.pt"
    assert main(["import-weights", "rpcanet", str(tmp_path / "bad.pkl"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(tmp_path / "bad.pkl") in err
    assert "'decos.2.sparse.convs.0.weight' has shape (16, 1, 3, 3)" in err
    assert "(32, 1, 3, 3)" in err
    assert not out.exists()

    unknown = {**state, "decos.0.extra.weight": torch.zeros(1)}
    torch.save(unknown, tmp_path / "unknown.pkl")
    assert main(["import-weights", "rpcanet", str(tmp_path / "unknown.pkl"), "--out", str(out)])
    assert "'decos.0.extra.weight' maps to no parameter" in capsys.readouterr().err

    missing = {k: v for k, v in state.items() if k != "decos.5.sparse.epsilon"}
    torch.save(missing, tmp_path / "missing.pkl")
    assert main(["import-weights", "rpcanet", str(tmp_path / "missing.pkl"), "--out", str(out)])
    assert "no tensor for rpcanet base 'stages.5.eps'" in capsys.readouterr().err


def test_pickled_code_is_refused(tmp_path, capsys):
    (tmp_path / "evil.pkl").write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    out = tmp_path / "out.pt"
    assert main(["import-weights", "rpcanet", str(tmp_path / "evil.pkl"), "--out", str(out)]) == 2
    assert "cannot read weights safely" in capsys.readouterr().err


def test_preprocessing_helpers():
    assert checkpoint_preprocessing({})["normalize"] == "standardize"  # ours by default
    image = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    assert np.array_equal(normalize_image(image, "unit"), image)
    assert abs(float(normalize_image(image, "standardize").mean())) < 1e-6
    # OpenCV INTER_LINEAR at exactly 1/2 scale averages 2x2 blocks (no anti-aliasing filter).
    blocks = image.reshape(2, 2, 2, 2).mean(axis=(1, 3))
    assert np.allclose(resize_input(image, (2, 2), "bilinear-opencv"), blocks, atol=1e-6)
    assert not np.allclose(resize_input(image, (2, 2), "bilinear"), blocks, atol=1e-3)
    with pytest.raises(ValueError):
        checkpoint_preprocessing({"preprocessing": {"normalize": "imagenet"}})


def test_eval_and_predict_honour_checkpoint_preprocessing(tmp_path):
    from nairstd.io import save_torch
    from nairstd.predict import predict_files, predict_probability
    from nairstd.train.evaluate import evaluate_checkpoint

    data = write_toolbox_dataset(tmp_path, "toy", n=4)
    torch.manual_seed(0)
    model = build_model("rpcanet", "tiny").eval()
    prep = {"normalize": "unit", "resize": "bilinear-opencv", "input_size": 32}
    ours = save_torch(model_checkpoint(model, "rpcanet", "tiny", {}), tmp_path / "ours.pt")
    peer = save_torch(
        model_checkpoint(model, "rpcanet", "tiny", {}, preprocessing=prep), tmp_path / "peer.pt"
    )
    a = evaluate_checkpoint(ours, data, "test", device="cpu")
    b = evaluate_checkpoint(peer, data, "test", device="cpu")
    assert b["preprocessing"]["normalize"] == "unit" and a["preprocessing"]["normalize"] == (
        "standardize"
    )
    # Same weights, different input preprocessing: a different union of predicted pixels.
    assert (a["union"], a["intersection"]) != (b["union"], b["intersection"])
    image_file = data / "images" / "img0.png"
    result = predict_files(peer, [image_file], tmp_path / "pred", protocol="resize256")
    assert result.ok
    from nairstd.data.images import read_image

    expected = predict_probability(
        model, read_image(image_file), "resize256", 32, "cpu", preprocessing=prep
    )
    from PIL import Image

    written = np.asarray(Image.open(tmp_path / "pred" / "img0.png"), dtype=np.float32) / 255
    assert np.abs(written - expected).max() <= 0.5 / 255 + 1e-6


def test_peer_metrics_by_hand():
    gt = np.zeros((8, 8), bool)
    gt[2:4, 2:4] = True  # one 4-px target
    pred = np.zeros((8, 8), bool)
    pred[2:4, 2:5] = True  # covers it, plus 2 px outside
    m = peer_metrics([(pred, gt)])
    assert m["IoU"] == pytest.approx(100 * 4 / 6)
    assert m["F1"] == pytest.approx(100 * 2 * 4 / (2 * 4 + 2))
    assert m["Pd"] == 100.0
    assert m["Fa"] == pytest.approx(1e6 * 2 / 60)
    prob = np.array([[0.2, 0.3], [0.1, 0.0]], np.float32)
    assert binarise(prob, "sigmoid>0.5").sum() == 0
    assert binarise(prob, "p/max>0.5").tolist() == [[True, True], [False, False]]


def test_official_rows_not_computed_without_weights(tmp_path, monkeypatch):
    from nairstd.data.index import find_dataset

    monkeypatch.setenv("NAIRSTD_WEIGHTS", str(tmp_path / "no-weights"))
    sirst_like = find_dataset(write_toolbox_dataset(tmp_path, "SIRST", n=4))
    rows, notes = official_weights_rows([sirst_like], "quick", tmp_path / "tables")
    measured = [r for r in rows if r["source"].startswith("official weights")]
    assert len(measured) == 1 and "n/c" in measured[0]["source"]
    assert "IoU" not in measured[0]  # not computed: the cell stays empty (n/c)
    assert any("no-weights" in n and "n/c" in n for n in notes)
    reported = [r for r in rows if r["source"].startswith("reported")]
    assert reported and reported[0]["IoU"] == pytest.approx(70.37)
    rows, notes = official_weights_rows([], "quick")
    assert any("not at hand" in n for n in notes)


def test_opencv_nearest_samples_by_floor():
    from nairstd.reproduce.peer_metrics import opencv_nearest

    mask = np.arange(16).reshape(4, 4)
    assert opencv_nearest(mask, (2, 2)).tolist() == [[0, 2], [8, 10]]
    assert opencv_nearest(mask, (4, 4)).tolist() == mask.tolist()


def test_official_row_measured_with_weights_at_hand(tmp_path, monkeypatch):
    from nairstd.data.index import find_dataset

    folder = tmp_path / "weights" / "rpcanet-sirst"
    folder.mkdir(parents=True)
    fake_official(folder / "RPCANet.pkl")
    monkeypatch.setenv("NAIRSTD_WEIGHTS", str(tmp_path / "weights"))
    sirst_like = find_dataset(write_toolbox_dataset(tmp_path, "SIRST", n=3))
    rows, notes = official_weights_rows([sirst_like], "quick", tmp_path / "tables", limit=1)
    measured = [r for r in rows if r["source"].startswith("official weights, measured")]
    assert len(measured) == 1 and np.isfinite(measured[0]["IoU"])
    assert measured[0]["params"] == sum(
        p.numel() for p in build_model("rpcanet", "base").parameters()
    )
    assert any("MIT licence" in n and "import-weights rpcanet" in n for n in notes)


def test_official_passes_fill_the_caches_the_rows_read(tmp_path, monkeypatch):
    """Table III runs the published weights' passes in workers; the rows then only read caches."""
    from nairstd.data.index import find_dataset
    from nairstd.reproduce import official_weights
    from nairstd.reproduce.official_weights import official_weights_passes
    from nairstd.train import evaluate

    monkeypatch.setenv("NAIRSTD_WEIGHTS", str(tmp_path / "no-weights"))
    sirst_like = find_dataset(write_toolbox_dataset(tmp_path, "SIRST", n=3))
    assert official_weights_passes([sirst_like], "quick") == []  # no weights: nothing to run
    folder = tmp_path / "weights" / "rpcanet-sirst"
    folder.mkdir(parents=True)
    fake_official(folder / "RPCANet.pkl")
    monkeypatch.setenv("NAIRSTD_WEIGHTS", str(tmp_path / "weights"))
    passes = official_weights_passes([sirst_like], "quick", limit=1)
    assert [label for label, _, _ in passes] == [
        "RPCANet official weights: scoring",
        "RPCANet official weights: gap analysis",  # quick's gap_scope "metrics"
    ]
    for _, fn, args in passes:
        fn(*args)

    def recompute(*args, **kwargs):
        raise AssertionError("recomputed a pass the workers had cached")

    monkeypatch.setattr(evaluate, "evaluate_checkpoint", recompute)
    monkeypatch.setattr(official_weights, "gap_rows", recompute)
    rows, _ = official_weights_rows([sirst_like], "quick", tmp_path / "tables", limit=1)
    measured = [r for r in rows if r["source"].startswith("official weights, measured")]
    assert len(measured) == 1 and np.isfinite(measured[0]["IoU"])


def test_toolbox_pd_fa_drops_false_alarms_of_a_matched_area():
    from nairstd.reproduce.peer_metrics import toolbox_pd_fa

    gt = np.zeros((16, 16), bool)
    gt[2:4, 2:4] = True
    pred = np.zeros((16, 16), bool)
    pred[2:4, 2:4] = True  # matched, area 4
    pred[10:12, 10:12] = True  # false alarm, also area 4: the toolbox code does not count it
    pred[6, 12:15] = True  # false alarm, area 3: counted
    m = toolbox_pd_fa([(pred, gt)])
    assert m["Pd"] == 100.0
    assert m["Fa"] == pytest.approx(1e6 * 3 / 256)
