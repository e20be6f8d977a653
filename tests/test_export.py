"""`export --format onnx` and `predict --backend onnxruntime`: the exported graph passes
onnx.checker, carries the checkpoint's operating point, and reproduces PyTorch (probabilities
within 1e-4, the same detections) through the same predict pipeline; what cannot be exported
is refused with one error line."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from conftest import one_error_line, set_gamma, tiny_model, write_tiny_checkpoint
from PIL import Image

from nairstd.bench.parity import compare_frame, detections_agree
from nairstd.cli import main as cli_main
from nairstd.data.images import DataError, read_image
from nairstd.export import TOLERANCE, describe, export_model
from nairstd.onnx_backend import OnnxModel
from nairstd.operating import shipped_path
from nairstd.predict import predict_probability

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shipped_onnx(tmp_path_factory, one_thread):
    """The shipped na_irstd and detector exported once through the CLI (dynamic size)."""
    folder = tmp_path_factory.mktemp("onnx")
    out = {}
    for name in ("na_irstd", "detector"):
        path = folder / f"{name}.onnx"
        rc = cli_main(
            ["export", "--checkpoint", str(shipped_path(name)), "--out", str(path), "--dynamic"]
        )
        assert rc == 0
        out[name] = path
    return out


def _torch_model(name: str):
    from nairstd.train.checkpoint import load_model

    return load_model(shipped_path(name))


def test_shipped_export_passes_the_checker_and_carries_the_operating_point(shipped_onnx):
    for name, path in shipped_onnx.items():
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
        meta = describe(path)
        _, ckpt = _torch_model(name)
        assert meta["model"] == name and meta["size"] == "tiny"
        assert meta["protocol"] == ckpt["protocol"] == "native"
        assert float(meta["threshold"]) == ckpt["threshold"]
        assert meta["preprocessing"] == (
            '{"input_size": null, "normalize": "standardize", "resize": "bilinear"}'
        )
        exported_at = json.loads(shipped_path(name).with_suffix(".json").read_text())["commit"]
        assert meta["commit"] == exported_at and meta["run_id"] == ckpt["run_id"]
        assert meta["export_commit"] and meta["input"] == "dynamic"
        ops = {n.op_type for n in proto.graph.node}
        # na_irstd: Top-K selection, gather of the selected windows and their scatter inside.
        assert ({"TopK", "ScatterND"} <= ops) == (name == "na_irstd")


def _frames() -> list[np.ndarray]:
    """Generated [0, 1] frames: odd sizes (padding), few patches (K > N), a bright target."""
    rng = np.random.default_rng(0)
    out = []
    for h, w in ((37, 45), (100, 150), (96, 64)):
        frame = rng.normal(0.3, 0.05, (h, w)).clip(0, 1).astype(np.float32)
        frame[h // 2 : h // 2 + 3, w // 3 : w // 3 + 3] = 0.9
        out.append(frame)
    return out


@pytest.mark.parametrize("name", ["na_irstd", "detector"])
def test_parity_on_generated_frames(shipped_onnx, name):
    model, ckpt = _torch_model(name)
    exported = OnnxModel.load(shipped_onnx[name], "cpu")
    assert exported.info["threshold"] == ckpt["threshold"]
    for i, frame in enumerate(_frames()):
        row = compare_frame(model, exported, frame, f"f{i}.png", "native", ckpt["threshold"])
        assert row["max_abs_diff"] <= TOLERANCE, row
        assert row["detections_agree"], row
    # Tiled (a 200x300 frame in 192 px windows with a 64 px margin), and resize256.
    frame = _frames()[1]
    big = np.tile(frame, (2, 2))
    a = predict_probability(model, big, "native", tile=192)
    b = predict_probability(exported, big, "native", tile=192)
    assert np.abs(a - b).max() <= TOLERANCE
    a = predict_probability(model, frame, "resize256")
    b = predict_probability(exported, frame, "resize256")
    assert np.abs(a - b).max() <= TOLERANCE


def test_the_injection_is_in_the_graph():
    """With gamma = 1 the injection moves the output; the graph must move it the same way (an
    exporter that drops the window scatter still matches a model whose gamma is near 0)."""
    model = tiny_model("na_irstd", top_k=3).eval()
    x = torch.randn(1, 1, 64, 96, generator=torch.Generator().manual_seed(1))
    set_gamma(model, 0.0)
    with torch.inference_mode():
        without = torch.sigmoid(model(x)).numpy()
    set_gamma(model, 1.0)
    with torch.inference_mode():
        want = torch.sigmoid(model(x)).numpy()
    data, report = export_model(model, (64, 96), name="na_irstd")
    assert report["top_k"]
    got = OnnxModel(_session(data), {"path": "mem"}, None).probability(x.numpy()[0, 0])
    assert np.abs(want - without).max() > 1e-2  # the injection matters here
    assert np.abs(got - want[0, 0]).max() <= TOLERANCE


def _session(data: bytes):
    import onnxruntime as ort

    from nairstd.onnx_backend import session_options

    return ort.InferenceSession(data, session_options(1), providers=["CPUExecutionProvider"])


def test_onnx_topk_breaks_ties_like_the_stable_sort():
    from nairstd.models.scoring import k_for, select_top_k

    class Select(torch.nn.Module):
        def forward(self, scores):
            return select_top_k(scores, k_for(scores.shape[1], 5))

    path_bytes = _export_small(Select(), torch.rand(1, 64))
    session = _session(path_bytes)
    rng = np.random.default_rng(0)
    for n in (3, 64, 500):
        scores = rng.integers(0, 3, (1, n)).astype(np.float32)  # many ties
        got = session.run(None, {"scores": scores})[0]
        want = select_top_k(torch.from_numpy(scores), k_for(n, 5)).numpy()
        assert got.tolist() == want.tolist()


def _export_small(module: torch.nn.Module, example: torch.Tensor) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.onnx.export(
        module,
        (example,),
        buffer,
        input_names=["scores"],
        dynamic_axes={"scores": {1: "n"}},
        opset_version=17,
        dynamo=False,
    )
    return buffer.getvalue()


def test_out_of_place_scatter_matches_the_in_place_one():
    from nairstd.models.injection import _scatter_out_of_place, scatter_windows

    f = torch.randn(2, 3, 8, 12).contiguous(memory_format=torch.channels_last)
    g = torch.randn(3, 16, 3)
    b, r, c = torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), torch.tensor([2, 0, 1])
    want = scatter_windows(f, g, b, r, c, 4)
    gw = g.reshape(3, 4, 4, 3).permute(0, 3, 1, 2)
    assert torch.equal(_scatter_out_of_place(f, gw, b, r, c, 4), want)


@pytest.mark.parametrize(
    "name, hw",
    [("acm", None), ("isnet", None), ("rpcanet", None), ("dnanet", (48, 64)), ("uiunet", (48, 64))],
)
def test_deep_baselines_export(name, hw):
    """Every deep baseline exports (dynamic here for three, at a fixed size for the two largest
    graphs, to keep the test short; `bench parity --checkpoint` measures any of them)."""
    data, report = export_model(tiny_model(name).eval(), hw, name=name)
    assert len(report["verified"]) == (3 if hw is None else 1)
    assert all(r["max_abs_diff"] <= TOLERANCE for r in report["verified"])


def test_a_graph_that_does_not_generalise_is_refused_and_a_fixed_size_exports():
    model = tiny_model("agpcnet").eval()
    with pytest.raises(DataError, match=r"agpcnet\.py:\d+.*--size WxH"):
        export_model(model, None, name="agpcnet")
    _, report = export_model(model, (48, 64), name="agpcnet")
    assert report["input"] == "64x48"


def test_reflect_padding_is_refused_for_a_dynamic_graph():
    with pytest.raises(DataError, match="reflect"):
        export_model(tiny_model("detector", pad_mode="reflect").eval(), None)


# ------------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------------
def test_export_refuses_to_write_over_its_checkpoint(tmp_path, capsys, monkeypatch):
    ckpt = write_tiny_checkpoint(tmp_path / "model.pt", top_k=3)
    before = ckpt.read_bytes()
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    (tmp_path / "model.onnx").symlink_to(ckpt)  # another name for the same file
    for out in ("../model.pt", str(tmp_path / "model.onnx")):
        rc = cli_main(["export", "--checkpoint", str(ckpt), "--out", out])
        assert rc == 2
        assert "refusing to write over it" in one_error_line(capsys)
    assert ckpt.read_bytes() == before


def test_export_names_an_operator_it_cannot_export(tmp_path, capsys, monkeypatch):
    """A stable sort has no ONNX form: the refusal names it, and nothing is written."""
    from nairstd.models import na_irstd as module

    def stable_sort_top_k(scores, k):
        return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]

    monkeypatch.setattr(module, "select_top_k", stable_sort_top_k)
    ckpt = write_tiny_checkpoint(tmp_path / "model.pt", top_k=3)
    out = tmp_path / "model.onnx"
    rc = cli_main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--size", "64x64"])
    line = one_error_line(capsys)
    assert rc == 2 and "cannot export to ONNX" in line and "Sort" in line
    assert not out.exists() and not list(tmp_path.glob(".model.onnx*"))


@pytest.mark.parametrize(
    "args, words",
    [
        (["--size", "64"], "WIDTHxHEIGHT"),
        (["--size", "64x64", "--dynamic"], "not allowed with"),
        (["--format", "tflite"], "invalid choice"),
    ],
)
def test_export_bad_options(checkpoint, tmp_path, capsys, args, words):
    with pytest.raises(SystemExit) as stop:  # argparse: the one line, status 2
        cli_main(
            ["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"), *args]
        )
    assert stop.value.code == 2 and words in one_error_line(capsys)
    assert not (tmp_path / "m.onnx").exists()


def test_export_needs_an_onnx_name_and_a_network(checkpoint, tmp_path, capsys):
    assert cli_main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m")]) == 2
    assert ".onnx" in one_error_line(capsys)
    assert cli_main(["export", "--checkpoint", "tophat", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "classical" in one_error_line(capsys)


@pytest.fixture
def frames(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, frame in enumerate(_frames()):
        Image.fromarray((frame * 255).astype(np.uint8)).save(folder / f"f{i}.png")
    return folder


def _predict(args: list[str]) -> int:
    return cli_main(["predict", "--device", "cpu", *args])


@pytest.fixture
def detector_checkpoint(tmp_path):
    """A seeded, untrained detector tiny checkpoint (exports in half the time of na_irstd)."""
    from nairstd.io import save_torch
    from nairstd.train.checkpoint import model_checkpoint

    path = tmp_path / "detector.pt"
    save_torch(model_checkpoint(tiny_model("detector"), "detector", "tiny", {}), path)
    return path


def _same_outputs(want_dir, got_dir) -> None:
    """Same detections (peak within 1e-4) and the same PNGs to 1/255."""
    want = pd.read_csv(want_dir / "detections.csv").to_dict("records")
    got = pd.read_csv(got_dir / "detections.csv").to_dict("records")
    assert detections_agree(want, got)
    for png in want_dir.glob("*.png"):
        a = np.asarray(Image.open(png), np.int16)
        b = np.asarray(Image.open(got_dir / png.name), np.int16)
        assert np.abs(a - b).max() <= 1, png.name


def test_export_then_predict_on_onnxruntime_matches_torch(checkpoint, frames, tmp_path):
    """export -> predict --checkpoint model.onnx: the torch backend's maps and detections."""
    onnx_file = tmp_path / "model.onnx"
    assert cli_main(["export", "--checkpoint", str(checkpoint), "--out", str(onnx_file)]) == 0
    for name, ckpt in (("torch", checkpoint), ("onnx", onnx_file)):
        assert (
            _predict(
                [
                    "--checkpoint",
                    str(ckpt),
                    "--input",
                    str(frames),
                    "--output",
                    str(tmp_path / name),
                ]
            )
            == 0
        )
    _same_outputs(tmp_path / "torch", tmp_path / "onnx")


def test_predict_backend_onnxruntime_on_a_checkpoint(detector_checkpoint, frames, tmp_path):
    """Sizes seen once run the dynamic graph, a repeated size its own fixed-size graph."""
    (frames / "f3.png").write_bytes((frames / "f0.png").read_bytes())
    for backend in ("torch", "onnxruntime"):
        args = ["--checkpoint", str(detector_checkpoint), "--backend", backend]
        assert _predict([*args, "--input", str(frames), "--output", str(tmp_path / backend)]) == 0
    _same_outputs(tmp_path / "torch", tmp_path / "onnxruntime")


def test_fixed_size_graphs_for_repeated_sizes_else_the_dynamic_one(monkeypatch):
    """`predict --backend onnxruntime` on a checkpoint: a size seen once runs the dynamic graph,
    the second input of a size gets its own fixed-size graph, at most MAX_SIZES of them."""
    from conftest import LocalNet

    from nairstd import onnx_sized

    monkeypatch.setattr(onnx_sized, "MAX_SIZES", 2)
    net = LocalNet().eval()
    logged = []
    model = onnx_sized.SizedOnnxModel(net, {"threshold": 0.3}, "cpu", log=logged.append)
    assert model.info["threshold"] == 0.3 and model.info["protocol"] == "native"
    rng = np.random.default_rng(0)
    sizes = [(20, 30), (20, 30), (16, 16), (20, 30), (16, 16), (12, 8), (12, 8), (16, 16)]
    for hw in sizes:
        x = rng.standard_normal(hw, dtype=np.float32)
        with torch.inference_mode():
            want = torch.sigmoid(net(torch.from_numpy(x)[None, None]))[0, 0].numpy()
        assert np.abs(model.probability(x) - want).max() <= TOLERANCE
    assert sorted(model.graphs) == [(16, 16), (20, 30)] and model.dynamic is not None
    assert [line.split(" graph")[0] for line in logged] == [
        "onnxruntime: exported the dynamic",
        "onnxruntime: exported a 30x20",
        "onnxruntime: exported a 16x16",
    ]


def test_predict_backend_errors(detector_checkpoint, frames, tmp_path, capsys):
    checkpoint = detector_checkpoint
    onnx_file = tmp_path / "fixed.onnx"
    rc = cli_main(
        ["export", "--checkpoint", str(checkpoint), "--out", str(onnx_file), "--size", "45x37"]
    )
    assert rc == 0
    capsys.readouterr()
    base = ["--input", str(frames), "--output", str(tmp_path / "o")]
    assert _predict(["--checkpoint", str(onnx_file), "--backend", "torch", *base]) == 2
    assert "onnxruntime" in one_error_line(capsys)
    assert _predict(["--checkpoint", "tophat", "--backend", "onnxruntime", *base]) == 2
    assert "classical" in one_error_line(capsys)
    assert _predict(["--checkpoint", str(onnx_file), "--compile", "on", *base]) == 2
    assert "torch backend" in one_error_line(capsys)
    # A fixed-size model runs the frame of its size; the others are named and skipped.
    assert _predict(["--checkpoint", str(onnx_file), *base]) == 1
    err = capsys.readouterr().err
    assert "takes 45x37 inputs only" in err and "f1.png" in err and "f0.png" not in err
    assert (tmp_path / "o" / "f0.png").is_file()


def test_a_foreign_or_broken_onnx_file_is_one_error_line(frames, tmp_path, capsys):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(_export_small(torch.nn.Identity(), torch.rand(1, 4)))
    base = ["--input", str(frames), "--output", str(tmp_path / "o")]
    assert _predict(["--checkpoint", str(broken), *base]) == 2
    assert "onnxruntime cannot load it" in one_error_line(capsys)
    assert _predict(["--checkpoint", str(foreign), *base]) == 2
    assert "not an ONNX file written by" in one_error_line(capsys)
    assert _predict(["--checkpoint", str(tmp_path / "missing.onnx"), *base]) == 2
    assert "not found" in one_error_line(capsys)


# ------------------------------------------------------------------------------------------------
# Real frames (skipped without SIRST)
# ------------------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize("name", ["na_irstd", "detector"])
def test_parity_on_sirst_frames(shipped_onnx, sirst_root, name):
    """The shipped models on SIRST test frames, native and at 640x512: probabilities within 1e-4
    and the same detections (`bench parity` measures every frame, and 1920x1080)."""
    from nairstd.data.images import resize_image

    model, ckpt = _torch_model(name)
    exported = OnnxModel.load(shipped_onnx[name], "cpu")
    stems = (sirst_root / "idx_427" / "test.txt").read_text().split()[:2]
    for stem in stems:
        image = read_image(sirst_root / "images" / f"{stem}.png")
        for frame in (image, resize_image(image, (512, 640))):
            row = compare_frame(model, exported, frame, stem, "native", ckpt["threshold"])
            assert row["max_abs_diff"] <= TOLERANCE, row
            assert row["detections_agree"], row
