"""The two-stage training API of the models (parameter groups, Stage-1 scoring, L_score) and the
patch labels (Eq. 10-11), on small tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import random_batch, set_gamma, tiny_model

from nairstd.models import (
    hard_patch_labels,
    score_loss,
    soft_patch_labels,
)

NATIVE = ["dense_cnn", "na_irstd"]


pytestmark = pytest.mark.usefixtures("one_thread")


# -- two-stage training API -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NATIVE)
def test_parameter_groups_partition_parameters(name):
    model = tiny_model(name)
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
    model = tiny_model("na_irstd").eval()
    x = random_batch()

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
    model = tiny_model(name)
    set_gamma(model, 0.1)
    model.freeze_scorer(True)
    model.train()
    assert not model.scorer.training and model.detector.training
    x = random_batch()
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
