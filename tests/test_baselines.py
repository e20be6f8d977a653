"""Baselines (Table III): deep nets forward/backward/train-step, parameter counts, classical maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nairstd.baselines import (
    BASELINE_INFO,
    CLASSICAL,
    DEEP_BASELINES,
    build_baseline,
    count_params,
)
from nairstd.baselines.classical import to_probability
from nairstd.baselines.classical.common import extract_patches, fold_patches
from nairstd.zoo import build_model, list_models

# The base (paper-size) parameter counts must be within this factor of the papers' counts.
PARAM_FACTOR = 1.25


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _tensors(out) -> list[torch.Tensor]:
    """Every float output tensor of a `return_aux=True` dict, for a loss touching all of them."""
    outs = []
    for v in out.values():
        for t in v if isinstance(v, list) else [v]:
            if isinstance(t, torch.Tensor) and t.requires_grad:
                outs.append(t)
    return outs


def test_registry_and_info():
    assert set(DEEP_BASELINES) <= set(list_models())
    for name in DEEP_BASELINES:
        info = BASELINE_INFO[name]
        assert info["kind"] == "deep" and info["available"]
    for name in ("irmamba", "saist"):
        assert BASELINE_INFO[name]["available"] is False
        assert "reported in the paper only" in BASELINE_INFO[name]["note"]
        with pytest.raises(NotImplementedError):
            build_baseline(name)
    for name in CLASSICAL:
        assert BASELINE_INFO[name]["kind"] == "traditional"
    with pytest.raises(TypeError, match="no field"):
        build_model("acm", "tiny", no_such_field=1)


@pytest.mark.parametrize("name", DEEP_BASELINES)
def test_forward_backward_tiny(name):
    model = build_model(name, "tiny").train()
    for shape in ((2, 1, 64, 64), (2, 1, 50, 70)):
        x = torch.rand(*shape)
        logits = model(x)
        assert isinstance(logits, torch.Tensor) and logits.shape == shape
        assert torch.isfinite(logits).all()
    model.zero_grad(set_to_none=True)
    out = model(torch.rand(2, 1, 50, 70), return_aux=True)
    assert out["logits"].shape == (2, 1, 50, 70)
    # Touch every output (main + auxiliary) so every parameter is on the graph.
    sum(t.float().square().mean() for t in _tensors(out)).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"
    # The paper's loss runs on both forms of the output.
    target = (torch.rand(2, 1, 50, 70) > 0.97).float()
    for o in (out, out["logits"]):
        loss = model.loss(o, target)
        assert loss.ndim == 0 and torch.isfinite(loss)
    # Eval mode, batch 1 (no batch-statistics over a single value anywhere).
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 33, 47)).shape == (1, 1, 33, 47)


@pytest.mark.parametrize("name", DEEP_BASELINES)
def test_train_step_changes_weights(name):
    model = build_model(name, "tiny").train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(2, 1, 64, 64)
    y = torch.zeros(2, 1, 64, 64)
    y[:, :, 30:33, 30:33] = 1
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for _ in range(2):
        logits = model(x)
        p = torch.sigmoid(logits).flatten(1)
        g = y.flatten(1)
        dice = 1 - (2 * (p * g).sum(1) + 1) / (p.sum(1) + g.sum(1) + 1)
        loss = F.binary_cross_entropy_with_logits(logits, y) + dice.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, f"{name}: no weight changed after two Adam steps"


def test_base_param_counts(capsys):
    """Paper-size models are built (not run); their counts match the papers' within PARAM_FACTOR."""
    rows = []
    for name in DEEP_BASELINES:
        n_base = count_params(build_model(name, "base"))
        n_tiny = count_params(build_model(name, "tiny"))
        paper = BASELINE_INFO[name]["paper_size_params"]
        rows.append(
            f"{name:8s} base={n_base / 1e6:7.3f}M paper={paper / 1e6:7.3f}M tiny={n_tiny / 1e6:6.3f}M"
        )
        assert paper / PARAM_FACTOR <= n_base <= paper * PARAM_FACTOR, rows[-1]
        assert BASELINE_INFO[name]["reduced"] == (n_tiny < n_base), rows[-1]
    with capsys.disabled():
        print("\n" + "\n".join(rows))


# ------------------------------------------------------------------------------------------------
# Classical
# ------------------------------------------------------------------------------------------------
def _blob_image(size: int, seed: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    """A bright 3x3 blob on a noisy background with a gentle ramp (0.3 -> 0.4 across the image).

    Not perfectly flat on purpose: on a flat 96 px image the tensor methods have only 9 - 36
    patches, and PSTNN keeps the top singular value of every Fourier slice unpenalised - with no
    background structure at all, the blob itself is that value and goes to the background.
    """
    rng = np.random.default_rng(seed)
    ramp = 0.1 * np.linspace(0, 1, size)[None, :] + 0.05 * np.linspace(0, 1, size)[:, None]
    img = 0.3 + ramp + 0.02 * rng.standard_normal((size, size))
    cy, cx = size // 2 + 3, size // 2 - 5
    img[cy - 1 : cy + 2, cx - 1 : cx + 2] += 0.4
    return np.clip(img, 0, 1).astype(np.float32), (cy, cx)


@pytest.mark.parametrize("name", sorted(CLASSICAL))
def test_classical_finds_blob(name):
    size = 96 if name in ("pstnn", "nram") else 64
    img, (cy, cx) = _blob_image(size)
    prob = CLASSICAL[name](img)
    assert prob.shape == img.shape and prob.dtype == np.float32
    assert np.isfinite(prob).all() and prob.min() >= 0 and prob.max() <= 1
    py, px = np.unravel_index(np.argmax(prob), prob.shape)
    assert abs(py - cy) <= 1 and abs(px - cx) <= 1, (name, (py, px), (cy, cx))
    assert prob[cy, cx] > 0.5
    # Nothing but the blob (and at most a few noise pixels) passes the threshold.
    assert (prob > 0.5).sum() <= 30


def test_classical_odd_and_small_shapes():
    img, _ = _blob_image(64)
    for name, fn in CLASSICAL.items():
        out = fn(img[:37, :45])  # smaller than the tensor methods' patches: padded inside
        assert out.shape == (37, 45), name
    flat = np.full((48, 48), 0.4, np.float32)
    assert CLASSICAL["tophat"](flat).max() == 0  # a constant response maps to 0


def test_probability_mapping():
    r = np.random.default_rng(2).standard_normal(500) ** 3
    k = 3.0
    p = to_probability(r, k)
    z = (r - r.mean()) / r.std()
    np.testing.assert_allclose(p, np.where(z > 0, 1 - 2.0 ** (-z / k), 0.0), atol=1e-6)
    # 0.5 exactly at the paper's threshold mean + k std; strictly increasing above the mean.
    above = z > 0
    order = np.argsort(r[above])
    assert np.all(np.diff(p[above][order]) > 0)
    assert 1 - 2.0 ** (-k / k) == 0.5
    assert p[z <= 0].max() == 0


def test_patch_fold_roundtrip():
    img = np.random.default_rng(1).random((57, 83))
    patches, rows, cols = extract_patches(img, 20, 7)
    assert rows[-1] == 57 - 20 and cols[-1] == 83 - 20
    np.testing.assert_allclose(fold_patches(patches, rows, cols, img.shape), img)


def test_blas_threads_restored():
    from nairstd.baselines.classical.common import _openblas_handles, blas_threads

    before = [g() for _, g in _openblas_handles()]
    with blas_threads(1):
        assert all(g() == 1 for _, g in _openblas_handles())
    assert [g() for _, g in _openblas_handles()] == before
