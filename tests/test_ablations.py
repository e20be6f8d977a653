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
from nairstd.models import build_model, soft_patch_labels
from nairstd.models.native_branch import patchify
from nairstd.reproduce import ablations
from nairstd.widgets import (
    SelectionExplorer,
    explore_selection,
    patch_means,
    soft_weight_map,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
    path = ablations.explorer_snapshot(_model(), toy, toy.split("test")[0], tmp_path / "x.png")
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
