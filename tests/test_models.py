"""Tests of nairstd.models: registry, shapes, gradients, gamma = 0 identity, patch/window
alignment, Top-K, padding (the two-stage API and the patch labels: test_scorer.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import random_batch, set_gamma, tiny_model

from nairstd.models import (
    NaIRSTD,
    k_for,
    score_loss,
    select_top_k,
    soft_patch_labels,
)
from nairstd.models.injection import gather_windows, scatter_windows, window_index
from nairstd.models.native_branch import patchify, unpatchify
from nairstd.zoo import build_model, list_models

VARIANTS = ["detector", "detector_ds2", "dense_cnn", "na_irstd"]
NATIVE = ["dense_cnn", "na_irstd"]


pytestmark = pytest.mark.usefixtures("one_thread")


# -- registry -------------------------------------------------------------------------------


def test_registry_and_overrides():
    assert set(VARIANTS) <= set(list_models())
    m = build_model("na_irstd", top_k=8, patch_size=32, sigma=4.0)
    assert m.top_k == 8 and m.patch_size == 32 and m.config.sigma == 4.0
    with pytest.raises(TypeError, match="no_such_field"):
        build_model("na_irstd", no_such_field=1)
    with pytest.raises(TypeError, match="top_k"):
        build_model("detector", top_k=5)  # the detector has no native-branch fields
    with pytest.raises(ValueError):
        build_model("detector", size="huge")
    with pytest.raises(KeyError):
        build_model("not_a_model")


# -- forward / backward -----------------------------------------------------------------------


@pytest.mark.parametrize("name", VARIANTS)
def test_forward_shape_and_backward_grads(name):
    model = tiny_model(name).train()
    if isinstance(model, NaIRSTD):
        set_gamma(model, 0.1)  # non-zero so the injection and native branch get gradient
    x = random_batch()
    out = model(x, return_extras=True)
    logits = out["logits"]
    assert logits.shape == x.shape and torch.isfinite(logits).all()
    y = (x > 0.9).float()
    loss = F.binary_cross_entropy_with_logits(logits, y)
    if isinstance(model, NaIRSTD):
        loss = loss + score_loss(out["patch_logits"], soft_patch_labels(y, model.patch_size))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"


def test_extras_contract():
    model = tiny_model("na_irstd").eval()
    x = random_batch()
    with torch.no_grad():
        e = model(x, return_extras=True)
    B, N, K = 2, 6, 5
    assert e["patch_grid"] == (3, 2)
    assert e["patch_logits"].shape == e["patch_scores"].shape == (B, N)
    assert ((e["patch_scores"] > 0) & (e["patch_scores"] < 1)).all()
    assert torch.equal(e["patch_scores"], e["patch_logits"].sigmoid())
    assert e["selected"].shape == (B, K) and e["selected"].dtype == torch.long
    assert torch.equal(e["selected"], select_top_k(e["patch_scores"], K))
    widths, nwidths = model.config.widths, model.config.native_widths
    for lvl, (fd, ff, fn) in enumerate(
        zip(e["features_detector"], e["features_fused"], e["features_native"])
    ):
        s = 4 * 2**lvl
        assert fd.shape == ff.shape == (B, widths[lvl], 96 // s, 64 // s)
        P_l = 32 >> lvl
        assert fn.shape == (B, N, nwidths[lvl], P_l, P_l)
    det = tiny_model("detector")(x, return_extras=True)
    assert set(det) == {"logits", "features_detector"}


@pytest.mark.parametrize("name", VARIANTS)
def test_odd_size_is_padded_and_cropped(name):
    model = tiny_model(name).eval()
    x = random_batch(1, 250, 333)
    with torch.no_grad():
        out = model(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    if isinstance(model, NaIRSTD):
        with torch.no_grad():
            e = model(x, return_extras=True)
        assert e["patch_grid"] == (8, 11)  # padded to 256 x 352
        assert e["patch_scores"].shape == (1, 88)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(patch_size=16),  # stage 4 (stride 32) has no window: injected at stages 1-3 only
        dict(patch_size=64),
        dict(output_stride=4),
        dict(output_stride=1),
        dict(query_combine="max"),
        dict(native_block="conv"),
        dict(pad_mode="reflect"),
        dict(inject_heads=2, inject_norm=False, inject_pos=False),
        dict(native="dense", patch_size=64),
    ],
)
def test_config_variations_forward(overrides):
    model = tiny_model("na_irstd", **overrides).eval()
    set_gamma(model, 0.1)
    x = random_batch(2, 96, 64)
    with torch.no_grad():
        e = model(x, return_extras=True)
    P = model.patch_size
    assert e["logits"].shape == x.shape and torch.isfinite(e["logits"]).all()
    rows, cols = -(-96 // P), -(-64 // P)
    assert e["patch_grid"] == (rows, cols)
    assert e["features_native"][0].shape[1:] == (rows * cols, model.config.native_widths[0], P, P)


def test_memory_layout_does_not_change_the_function():
    nhwc = tiny_model("na_irstd").eval()
    nchw = tiny_model("na_irstd", channels_last=False).eval()
    nchw.load_state_dict(nhwc.state_dict())
    set_gamma(nhwc, 0.3)
    set_gamma(nchw, 0.3)
    x = random_batch()
    with torch.no_grad():
        assert torch.allclose(nhwc(x), nchw(x), atol=1e-4)


def test_detector_ds2_runs_at_half_resolution():
    x = random_batch(1, 64, 64)
    with torch.no_grad():
        feats = tiny_model("detector_ds2").eval()(x, return_extras=True)["features_detector"]
    assert feats[0].shape[-2:] == (8, 8)  # stride 4 of a 32 x 32 input


# -- gamma = 0 identity -------------------------------------------------------------------------


@pytest.mark.parametrize("name", NATIVE)
def test_gamma_zero_gives_the_detector_output(name):
    model = tiny_model(name).eval()
    x = random_batch()
    det = tiny_model("detector").eval()
    det.load_state_dict(model.detector.state_dict())
    with torch.no_grad():
        e = model(x, return_extras=True)
        for a, b in zip(e["features_detector"], e["features_fused"]):
            assert torch.equal(a, b)
        assert torch.equal(e["logits"], model.detector(x))
        assert torch.equal(e["logits"], det(x))


# -- patch / window alignment ----------------------------------------------------------------------


def test_patchify_order_and_roundtrip():
    x = torch.randn(2, 3, 96, 64)
    p, grid = patchify(x, 32)
    assert grid == (3, 2) and p.shape == (12, 3, 32, 32)
    for b in range(2):
        for r in range(3):
            for c in range(2):
                ref = x[b, :, r * 32 : (r + 1) * 32, c * 32 : (c + 1) * 32]
                assert torch.equal(p[b * 6 + r * 2 + c], ref)
    assert torch.equal(unpatchify(p, grid), x)
    assert torch.equal(unpatchify(p.reshape(2, 6, 3, 32, 32), grid), x)


@pytest.mark.parametrize("channels_last", [False, True])
def test_gather_scatter_windows(channels_last):
    f = torch.randn(2, 5, 12, 8)  # 3 x 2 windows of 4 x 4
    if channels_last:
        f = f.contiguous(memory_format=torch.channels_last)
    sel = torch.tensor([[5, 0], [2, 3]])
    b, r, c = window_index(sel, (3, 2))
    assert b.tolist() == [0, 0, 1, 1] and r.tolist() == [2, 0, 1, 1] and c.tolist() == [1, 0, 0, 1]
    g = gather_windows(f, b, r, c, 4)
    assert g.shape == (4, 16, 5)
    for m in range(4):
        ref = f[b[m], :, r[m] * 4 : (r[m] + 1) * 4, c[m] * 4 : (c[m] + 1) * 4]
        assert torch.equal(g[m], ref.permute(1, 2, 0).reshape(16, 5))
    out = scatter_windows(f, g + 1.0, b, r, c, 4)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    changed = torch.zeros(2, 12, 8, dtype=torch.bool)
    for m in range(4):
        changed[b[m], r[m] * 4 : (r[m] + 1) * 4, c[m] * 4 : (c[m] + 1) * 4] = True
    diff = (out - f).abs().amax(1)
    assert torch.allclose(diff[changed], torch.ones(()))
    assert (diff[~changed] == 0).all()


def _window_mask(grid, idx, H, W, window):
    m = torch.zeros(H, W, dtype=torch.bool)
    r, c = divmod(idx, grid[1])
    m[r * window : (r + 1) * window, c * window : (c + 1) * window] = True
    return m


def test_injection_marked_patch_lands_in_its_window_at_every_stage():
    """Native features are zero except in patch `marked[b]` of image b; biases are zeroed and the
    in-patch positions switched off, so a selected patch with zero features injects exactly
    nothing. Selecting (marked, other) must change window `marked` and nothing else, per stage."""
    model = tiny_model("na_irstd", inject_pos=False).eval()
    inj = model.injection
    set_gamma(model, 1.0)
    with torch.no_grad():
        for blk in inj.blocks:
            for lin in (blk.phi, blk.q, blk.kv):
                lin.bias.zero_()
    grid, N, B = (3, 2), 6, 2  # a 96 x 64 image: rows and columns differ, so swaps would show
    marked, other = [4, 1], [1, 5]
    torch.manual_seed(1)
    feats_bb, feats_na = [], []
    for lvl, (cw, nw) in enumerate(zip(model.config.widths, model.config.native_widths)):
        s, P_l = 4 * 2**lvl, 32 >> lvl
        feats_bb.append(torch.randn(B, cw, 96 // s, 64 // s))
        na = torch.zeros(B, N, nw, P_l, P_l)
        for b in range(B):
            na[b, marked[b]] = torch.randn(nw, P_l, P_l)
        feats_na.append(na)
    sel = torch.tensor([[marked[0], other[0]], [other[1], marked[1]]])
    with torch.no_grad():
        fused = inj(feats_bb, feats_na, sel, grid)
    for lvl, (fb, ff) in enumerate(zip(feats_bb, fused)):
        w = 32 // (4 * 2**lvl)
        H, W = fb.shape[-2:]
        for b in range(B):
            changed = (ff[b] != fb[b]).any(0)
            expect = _window_mask(grid, marked[b], H, W, w)
            assert changed[expect].all(), f"stage {lvl + 1}: window {marked[b]} unchanged"
            assert not changed[~expect].any(), f"stage {lvl + 1}: change outside window {marked[b]}"


def test_full_model_changes_only_selected_windows():
    model = tiny_model("na_irstd").eval()
    set_gamma(model, 0.5)
    with torch.no_grad():
        e = model(random_batch(), return_extras=True)
    grid = e["patch_grid"]
    for lvl, (fd, ff) in enumerate(zip(e["features_detector"], e["features_fused"])):
        w = 32 // (4 * 2**lvl)
        H, W = fd.shape[-2:]
        for b in range(2):
            expect = torch.zeros(H, W, dtype=torch.bool)
            for i in e["selected"][b].tolist():
                expect |= _window_mask(grid, i, H, W, w)
            changed = (ff[b] != fd[b]).any(0)
            assert not changed[~expect].any()
            assert changed[expect].any()


# -- Top-K ---------------------------------------------------------------------------------------------


def test_top_k_is_deterministic_breaks_ties_by_index_and_is_per_image():
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.9, 0.1], [0.2, 0.2, 0.2, 0.2, 0.2]])
    sel = select_top_k(scores, 3)
    assert sel.tolist() == [[1, 3, 0], [0, 1, 2]]
    assert sel.dtype == torch.long
    for _ in range(3):
        assert torch.equal(select_top_k(scores.clone(), 3), sel)
    # Large N with many ties: still index order within equal scores.
    s = torch.zeros(1, 300)
    s[0, 250] = 1.0
    assert select_top_k(s, 4).tolist() == [[250, 0, 1, 2]]


def test_k_for():
    assert k_for(64, 5) == 5
    assert k_for(3, 5) == 3  # at most N
    assert k_for(256, 0.1) == 26  # ceil(25.6)
    assert k_for(64, 0.001) == 1  # at least 1
    assert k_for(64, 1.0) == 64
    for bad in (0, -1, 1.5, 0.0):
        with pytest.raises(ValueError):
            k_for(64, bad)
    with pytest.raises(TypeError):
        k_for(64, True)


def test_fractional_top_k_in_forward():
    model = tiny_model("na_irstd", top_k=0.5).eval()
    with torch.no_grad():
        assert model(random_batch(), return_extras=True)["selected"].shape == (
            2,
            3,
        )  # ceil(0.5 * 6)
