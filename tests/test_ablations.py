"""Notebook 06 helpers (no training): unpatchify, feature maps, the K table, Fig. 5 / Fig. 7 (K)
drawing and the ipywidgets selection explorer (Tables IV/V and the claims: test_claims.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import write_toolbox_dataset

from nairstd.data import open_dataset
from nairstd.grid import patch_means
from nairstd.models import soft_patch_labels
from nairstd.models.native_branch import patchify
from nairstd.models.scoring import soft_weight_map
from nairstd.reproduce import ablations
from nairstd.widgets import SelectionExplorer, explore_selection
from nairstd.zoo import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(name: str = "na_irstd", **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, size="tiny", **kw).eval()


@pytest.fixture
def toy(tmp_path):
    """6 images of 40x48 with one 2x2 target each (test split: the last two)."""
    return open_dataset(write_toolbox_dataset(tmp_path, "TOY", n=6))


# --------------------------------------------------------------------------------------------------
# Unpatchify and the feature maps of Fig. 5
# --------------------------------------------------------------------------------------------------
def test_native_feature_map_inverts_patchify():
    x = torch.randn(2, 3, 64, 96)
    p, grid = patchify(x, 32)
    assert grid == (2, 3)
    back = ablations.native_feature_map(p.reshape(2, 6, 3, 32, 32), grid)
    assert torch.equal(back, x)


def test_native_feature_map_puts_each_patch_in_its_place():
    # Patch i = r * cols + c must land on rows r*P.., columns c*P.. (row-major lattice).
    rows, cols, P = 3, 4, 8
    f = torch.zeros(1, rows * cols, 1, P, P)
    for i in range(rows * cols):
        f[0, i] = i
    m = ablations.native_feature_map(f, (rows, cols))[0, 0]
    for r in range(rows):
        for c in range(cols):
            block = m[r * P : (r + 1) * P, c * P : (c + 1) * P]
            assert torch.all(block == r * cols + c)


def test_native_feature_map_rejects_bad_shapes():
    with pytest.raises(ValueError, match="B, N, d, P, P"):
        ablations.native_feature_map(torch.zeros(4, 2, 8, 8), (2, 2))
    with pytest.raises(ValueError, match="do not fill"):
        ablations.native_feature_map(torch.zeros(1, 5, 2, 8, 8), (2, 2))


def test_channel_mean_abs_upsamples():
    f = torch.full((1, 4, 8, 8), -2.0)
    m = ablations.channel_mean_abs(f, (32, 32))
    assert m.shape == (32, 32)
    assert np.allclose(m, 2.0)


@pytest.mark.parametrize("name", ["na_irstd", "dense_cnn"])
def test_feature_maps_on_the_image_lattice(name):
    model = _model(name)
    x = torch.randn(1, 1, 64, 96)
    maps = ablations.feature_maps(model, x)
    for key in ("detector", "native", "fused", "prob"):
        assert maps[key].shape == (64, 96), key
        assert np.isfinite(maps[key]).all()
    assert maps["grid"] == (2, 3)
    assert len(maps["selected"]) == min(5, 6)
    # gamma starts at 0: the untrained injection leaves the detector features unchanged.
    assert np.allclose(maps["fused"], maps["detector"], atol=1e-5)


def test_small_target_stems_and_fig5(toy, tmp_path):
    stems = ablations.small_target_stems(toy, n=2)
    assert len(stems) == 2 and set(stems) <= set(toy.split("test"))
    path = ablations.fig5(_model(), toy, stems, tmp_path / "fig5.png", "untrained")
    assert path.is_file() and path.stat().st_size > 10_000


# --------------------------------------------------------------------------------------------------
# Impact of K
# --------------------------------------------------------------------------------------------------
def _fake_eval(k: int) -> dict:
    return {
        "coverage": min(100.0, 20.0 * k),
        "precision": 100.0 / k,
        "IoU": 50 + k,
        "nIoU": 40 + k,
        "Pd": 80.0,
        "Fa": 10.0 / k,
        "FA_per_image": 0.1,
        "n_images": 6,
        "other": "ignored",
    }


def test_k_table_rows_and_default(tmp_path):
    table = ablations.k_table(_fake_eval, ks=(1, 2, 5, 16), default_k=5)
    assert list(table["K"]) == [1, 2, 5, 16]
    assert list(table["default"]) == [False, False, True, False]
    assert list(table.columns) == ["K", "default", *ablations.K_COLUMNS]
    assert table.loc[table["K"] == 2, "coverage"].item() == 40.0
    path = ablations.fig_k(table, tmp_path / "k.png")
    assert path.is_file() and path.stat().st_size > 10_000
    soft = ablations.Trained("soft", [_fake_run("na_irstd-s2")])
    _, md = ablations.write_k_table(table, soft, SimpleNamespace(name="TOY"), tmp_path, "smoke")
    text = md.read_text()
    assert ablations.K_NOTE in text and "na_irstd-s2" in text


def test_k_impact_changes_k_at_test_time(monkeypatch):
    calls = []

    def fake_measure(trained, index, profile, top_k=None):
        calls.append(top_k)
        return _fake_eval(top_k or 5)

    monkeypatch.setattr(ablations, "measure", fake_measure)
    soft = ablations.Trained("soft", [_fake_run("na_irstd-s2", top_k=5)])
    with pytest.warns(UserWarning, match="paper profile"):
        table, retrained = ablations.k_impact(soft, None, "smoke", ks=(1, 5, 8), retrain_k=True)
    assert not retrained
    assert calls == [1, 5, 8]
    assert table["default"].tolist() == [False, True, False]


def _fake_run(run_id: str, time_s: float = 60.0, top_k=None):
    config = SimpleNamespace(dataset="SIRST", top_k=top_k)
    return SimpleNamespace(run_id=run_id, metrics={"train_time_s": time_s}, config=config)


# --------------------------------------------------------------------------------------------------
# The ipywidgets explorer
# --------------------------------------------------------------------------------------------------
def test_soft_weight_map_matches_the_soft_labels():
    mask = np.zeros((64, 64), bool)
    mask[10:12, 40:43] = True
    mask[50, 5] = True
    ours = patch_means(soft_weight_map(mask, 6.0), 32).ravel()
    ref = soft_patch_labels(torch.from_numpy(mask)[None, None], 32, sigma=6.0)[0].numpy()
    assert np.allclose(ours, ref, atol=1e-6)


def test_explorer_widget_updates_and_caches_forwards(toy, capsys):
    import ipywidgets

    stems = toy.split("test")
    box = explore_selection(_model(), toy, stems, size=64)
    assert isinstance(box, ipywidgets.VBox)
    assert set(box.controls) == {"image", "k", "threshold", "sigma"}
    assert box.controls["k"].min == 1 and box.controls["k"].max == 16
    assert box.controls["threshold"].min == pytest.approx(0.05)
    assert box.controls["threshold"].max == pytest.approx(0.95)
    assert (box.controls["sigma"].min, box.controls["sigma"].max) == (1.0, 32.0)
    explorer: SelectionExplorer = box.explorer
    n0 = explorer.n_forward
    box.update(stems[0], 2, 0.5, 8.0)
    box.update(stems[0], 2, 0.2, 16.0)  # threshold / sigma: no new forward
    assert explorer.n_forward == n0 + 1
    box.update(stems[1], 3, 0.5, 4.0)
    assert explorer.n_forward == n0 + 2
    fwd = explorer.forward(stems[0], 2)
    assert len(fwd.selected) == 2 and fwd.prob.shape == (64, 64)
    assert explorer.model.top_k == 5  # restored after the forward
    line = explorer.summary(stems[0], 2, 0.5)
    assert "coverage" in line and "IoU" in line and "Pd" in line
    stats = explorer.stats(stems[0], 2, 0.5)
    assert stats["n_target_patches"] >= 1 and stats["n_selected"] == 2
    capsys.readouterr()


def test_explorer_render_and_snapshot(toy, tmp_path):
    explorer = SelectionExplorer(_model(), toy, toy.split("test"), size=64)
    fig = explorer.render(toy.split("test")[0], 4, 0.5, 8.0)
    assert len(fig.axes) >= 3
    import matplotlib.pyplot as plt

    plt.close(fig)
    path = explorer.save(tmp_path / "x.png")
    assert path.is_file()


def test_explorer_needs_a_native_branch(toy):
    with pytest.raises(ValueError, match="no native branch"):
        SelectionExplorer(_model("detector"), toy, toy.split("test"))
    with pytest.raises(ValueError, match="at least one"):
        SelectionExplorer(_model(), toy, [])


def test_notebook_pair_exists():
    repo = Path(__file__).resolve().parents[1]
    assert (repo / "notebooks" / "06_ablations.py").is_file()
    assert (repo / "notebooks" / "06_ablations.ipynb").is_file()


def test_explorer_figure_is_readable_at_1000_px_and_has_no_summary_drawn(toy):
    import matplotlib.pyplot as plt

    from nairstd.plots import min_font_pt_at

    explorer = SelectionExplorer(_model(), toy, toy.split("test"), size=64)
    fig = explorer.render(toy.split("test")[0], 4, 0.5, 8.0)
    try:
        assert min_font_pt_at(fig, 1000) >= 8.0
        assert not fig.texts, "the summary is text beside the figure, not drawn into it"
        assert fig._suptitle is None
    finally:
        plt.close(fig)
    # The measure itself: the same figure shown half as wide has half-size text.
    fig = explorer.render(toy.split("test")[0], 4, 0.5, 8.0)
    assert min_font_pt_at(fig, 500) == pytest.approx(min_font_pt_at(fig, 1000) / 2)
    plt.close(fig)


def test_explorer_markers_do_not_cover_the_soft_labels(toy):
    """No marker edge crosses a soft-label value (the issue: a value hid under the red ring)."""
    import matplotlib.pyplot as plt

    explorer = SelectionExplorer(_model(), toy, toy.split("test"), size=64)
    fig = explorer.render(toy.split("test")[0], 4, 0.5, 24.0)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        labels_ax = fig.axes[1]
        texts = [t for t in labels_ax.texts if t.get_text()]
        assert texts, "soft-label values expected on the patches"
        for text in texts:
            box = text.get_window_extent(renderer)
            for patch in labels_ax.patches:
                edge = patch.get_path().transformed(patch.get_transform())
                assert not edge.intersects_bbox(box, filled=False), (text.get_text(), patch)
    finally:
        plt.close(fig)


def test_explorer_opens_on_a_small_target_image_and_labels_areas(tmp_path):
    from nairstd.widgets import image_label

    # Images 0-1: one 6x6 target (36 px); images 2-3: one 2x2 target (4 px).
    folder = write_toolbox_dataset(tmp_path, "TOY", n=6)
    from PIL import Image as PILImage

    for i in (0, 1):
        mask = np.zeros((40, 48), np.uint8)
        mask[5:11, 7:13] = 255
        PILImage.fromarray(mask).save(folder / "masks" / f"img{i}.png")
    index = open_dataset(folder)
    stems = ["img0", "img1", "img2", "img3"]
    explorer = SelectionExplorer(_model(), index, stems, size=None)
    assert explorer.start == "img2"  # the first whose every target is < 20 px
    labels = dict((s, label) for label, s in explorer.options())
    assert labels["img0"] == "img0 - smallest target 36 px"
    assert labels["img2"] == "img2 - smallest target 4 px, all < 20 px"
    assert image_label("x", np.array([], int)) == "x - no target"
    assert SelectionExplorer(_model(), index, stems, size=None, start="img1").start == "img1"
    with pytest.raises(ValueError, match="not among"):
        SelectionExplorer(_model(), index, stems, start="nope")
    box = explorer.widget()
    assert box.controls["image"].value == "img2"


def test_explorer_widget_falls_back_to_the_saved_figure_not_vbox_text(toy, tmp_path):
    """Where no live widget can be shown (untrusted / exported notebook) the output holds the
    saved PNG and a sentence naming it, never `VBox(children=...)`."""
    import base64

    explorer = SelectionExplorer(_model(), toy, toy.split("test"), size=64)
    path = explorer.save(tmp_path / "selection_explorer.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bundle = explorer.widget(snapshot=path)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]) == path.read_bytes()
    assert "VBox(" not in bundle["text/plain"] and str(path) in bundle["text/plain"]


def test_explorer_summary_is_a_text_widget(toy):
    stems = toy.split("test")
    box = explore_selection(_model(), toy, stems, size=64)
    box.update(stems[0], 3, 0.5, 8.0)
    assert "K = 3" in box.summary.value and "coverage" in box.summary.value


def test_missing_optional_dataset_is_one_plain_sentence(tmp_path, monkeypatch, capsys, recwarn):
    from nairstd.reproduce import common

    monkeypatch.setenv("NAIRSTD_GENERATED", str(tmp_path))
    assert common.available(["IRSTD-Hard", "NUDT-SIRST"]) == []
    assert capsys.readouterr().out.splitlines() == [
        "Dataset IRSTD-Hard not found, so it is left out: notebook 01 (01_data_prep) builds it "
        "from the test splits at hand.",
        "Dataset NUDT-SIRST not found, so it is left out: put its folder in data/ or point "
        "NAIRSTD_DATA at it.",
    ]
    assert not recwarn.list
