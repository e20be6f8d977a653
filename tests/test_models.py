"""Tests of nairstd.models: shapes, gradients, gamma = 0 identity, patch/window alignment,
Top-K, two-stage API, labels (Eq. 10-12), padding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nairstd.models import (
    NaIRSTD,
    hard_patch_labels,
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


def _model(name: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, size="tiny", **kw)


def _set_gamma(model: NaIRSTD, value: float) -> None:
    with torch.no_grad():
        for p in model.injection.parameters():
            if p.dim() == 0:  # the gamma_l scalars
                p.fill_(value)


def _img(b: int = 2, h: int = 96, w: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 1, h, w, generator=torch.Generator().manual_seed(seed))


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
    model = _model(name).train()
    if isinstance(model, NaIRSTD):
        _set_gamma(model, 0.1)  # non-zero so the injection and native branch get gradient
    x = _img()
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
    model = _model("na_irstd").eval()
    x = _img()
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
    det = _model("detector")(x, return_extras=True)
    assert set(det) == {"logits", "features_detector"}


@pytest.mark.parametrize("name", VARIANTS)
def test_odd_size_is_padded_and_cropped(name):
    model = _model(name).eval()
    x = _img(1, 250, 333)
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
    model = _model("na_irstd", **overrides).eval()
    _set_gamma(model, 0.1)
    x = _img(2, 96, 64)
    with torch.no_grad():
        e = model(x, return_extras=True)
    P = model.patch_size
    assert e["logits"].shape == x.shape and torch.isfinite(e["logits"]).all()
    rows, cols = -(-96 // P), -(-64 // P)
    assert e["patch_grid"] == (rows, cols)
    assert e["features_native"][0].shape[1:] == (rows * cols, model.config.native_widths[0], P, P)


def test_memory_layout_does_not_change_the_function():
    nhwc = _model("na_irstd").eval()
    nchw = _model("na_irstd", channels_last=False).eval()
    nchw.load_state_dict(nhwc.state_dict())
    _set_gamma(nhwc, 0.3)
    _set_gamma(nchw, 0.3)
    x = _img()
    with torch.no_grad():
        assert torch.allclose(nhwc(x), nchw(x), atol=1e-4)


def test_detector_ds2_runs_at_half_resolution():
    x = _img(1, 64, 64)
    with torch.no_grad():
        feats = _model("detector_ds2").eval()(x, return_extras=True)["features_detector"]
    assert feats[0].shape[-2:] == (8, 8)  # stride 4 of a 32 x 32 input


# -- gamma = 0 identity -------------------------------------------------------------------------


@pytest.mark.parametrize("name", NATIVE)
def test_gamma_zero_gives_the_detector_output(name):
    model = _model(name).eval()
    x = _img()
    det = _model("detector").eval()
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
    model = _model("na_irstd", inject_pos=False).eval()
    inj = model.injection
    _set_gamma(model, 1.0)
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
    model = _model("na_irstd").eval()
    _set_gamma(model, 0.5)
    with torch.no_grad():
        e = model(_img(), return_extras=True)
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
    model = _model("na_irstd", top_k=0.5).eval()
    with torch.no_grad():
        assert model(_img(), return_extras=True)["selected"].shape == (2, 3)  # ceil(0.5 * 6)


# -- two-stage training API -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NATIVE)
def test_parameter_groups_partition_parameters(name):
    model = _model(name)
    groups = [model.native_parameters(), model.scorer_parameters(), model.main_parameters()]
    ids = [[id(p) for p in g] for g in groups]
    flat = [i for g in ids for i in g]
    assert len(flat) == len(set(flat)), "a parameter is in two groups"
    assert set(flat) == {id(p) for p in model.parameters()}
    assert all(ids), "empty group"
    main = set(ids[2])
    assert id(model.injection.blocks[0].gamma) in main
    assert {id(p) for p in model.detector.parameters()} <= main


def test_score_patches_is_stage1_only():
    model = _model("na_irstd").eval()
    x = _img()

    def boom(*_):
        raise AssertionError("score_patches ran the detector")

    handle = model.detector.register_forward_pre_hook(boom)
    handle_enc = model.detector.encoder.register_forward_pre_hook(boom)
    with torch.no_grad():
        logits, scores = model.score_patches(x)
    handle.remove()
    handle_enc.remove()
    assert logits.shape == scores.shape == (2, 6)
    with torch.no_grad():
        e = model(x, return_extras=True)
    assert torch.equal(logits, e["patch_logits"])
    assert torch.equal(scores, logits.sigmoid())


@pytest.mark.parametrize("name", NATIVE)
def test_stage2_scorer_gets_no_gradient(name):
    model = _model(name)
    _set_gamma(model, 0.1)
    model.freeze_scorer(True)
    model.train()
    assert not model.scorer.training and model.detector.training
    x = _img()
    logits = model(x)
    F.binary_cross_entropy_with_logits(logits, (x > 0.9).float()).backward()
    for p in model.scorer_parameters():
        assert not p.requires_grad and p.grad is None
    for group in (model.native_parameters(), model.main_parameters()):
        for p in group:
            assert p.grad is not None and torch.isfinite(p.grad).all()
    model.freeze_scorer(False)
    assert all(p.requires_grad for p in model.scorer_parameters()) and model.scorer.training


def test_score_loss_is_mean_bce():
    logits = torch.tensor([[0.3, -1.0], [2.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0], [0.25, 0.5]])
    p = logits.sigmoid()
    ref = -(labels * p.log() + (1 - labels) * (1 - p).log()).mean()
    assert torch.allclose(score_loss(logits, labels), ref)


# -- patch labels (Eq. 10-11) -----------------------------------------------------------------------------


def test_soft_labels_single_pixel_hand_case():
    # One target pixel at (row 10, col 20) of a 64 x 64 mask, P = 32, sigma = 8. w is separable,
    # so the mean over patch (R, C) is (1/1024) * Sy(R) * Sx(C) with
    # Sy(R) = sum_{i in rows of R} exp(-(i - 10)^2 / 128), Sx(C) = sum_{j in cols of C} exp(-(j - 20)^2 / 128):
    # Sy = (18.085579, 0.071803), Sx = (18.442242, 1.507086).
    mask = torch.zeros(1, 1, 64, 64, dtype=torch.bool)
    mask[0, 0, 10, 20] = True
    y = soft_patch_labels(mask, 32, sigma=8.0)
    expected = torch.tensor([[0.32572132, 0.02661770, 0.00129316, 0.00010568]])
    assert torch.allclose(y, expected, atol=1e-6)

    def S(a, c):
        return sum(math.exp(-((i - c) ** 2) / 128) for i in range(a, a + 32))

    closed = [S(r, 10) * S(c, 20) / 1024 for r in (0, 32) for c in (0, 32)]
    assert torch.allclose(y, torch.tensor([closed]), atol=1e-6)


def test_soft_labels_centroids_components_and_max():
    # Two diagonal pixels are ONE 8-connected component with centroid (40.5, 40.5); a second,
    # far target takes the max, not the sum.
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, 0, 40, 40] = mask[0, 0, 41, 41] = 1.0
    mask[0, 0, 5:8, 5:8] = 1.0  # 3 x 3 blob, centroid (6, 6)
    y = soft_patch_labels(mask, 32, sigma=4.0)
    rr = torch.arange(64.0)
    w1 = torch.exp(-((rr[:, None] - 40.5) ** 2 + (rr[None] - 40.5) ** 2) / 32)
    w2 = torch.exp(-((rr[:, None] - 6.0) ** 2 + (rr[None] - 6.0) ** 2) / 32)
    w = torch.maximum(w1, w2)
    ref = w.reshape(2, 32, 2, 32).mean((1, 3)).reshape(-1)
    assert torch.allclose(y[0], ref, atol=1e-6)
    assert (y[1] == 0).all()  # empty mask -> zeros


def test_soft_labels_pad_like_the_model():
    mask = torch.zeros(1, 1, 40, 70, dtype=torch.bool)
    mask[0, 0, 35, 68] = True
    y = soft_patch_labels(mask, 32)
    assert y.shape == (1, 6)  # padded to 64 x 96: 2 x 3 patches, row-major
    assert y.argmax().item() == 1 * 3 + 2


def test_hard_labels():
    mask = torch.zeros(2, 1, 64, 64, dtype=torch.bool)
    mask[0, 0, 3, 40] = True  # patch (0, 1)
    mask[0, 0, 33, 0] = True  # patch (1, 0)
    assert hard_patch_labels(mask, 32).tolist() == [[0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    assert hard_patch_labels(mask.float() * 0.4, 32).sum() == 0  # floats binarised at 0.5


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
