"""Issue 14: the optimised eval forward of Na-IRSTD equals the original op sequence to 1e-5."""

from __future__ import annotations

import pytest
import torch
from reference_na_irstd import reference_forward, unfused

from nairstd.zoo import build_model


def _trained_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BN statistics and gamma != 0, so folding and injection are really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
        for block in model.injection.blocks if hasattr(model, "injection") else []:
            if hasattr(block, "gamma"):
                block.gamma.fill_(0.7)
    return model.eval()


@pytest.mark.parametrize(
    "overrides,shape",
    [
        ({}, (2, 1, 64, 96)),
        ({"top_k": 0.5}, (1, 1, 70, 45)),  # padded, fractional K
        ({"native_block": "conv", "channels_last": False}, (1, 1, 64, 64)),
    ],
)
def test_fast_eval_forward_matches_reference(overrides, shape):
    torch.manual_seed(0)
    model = _trained_like(build_model("na_irstd", "tiny", **overrides))
    x = torch.randn(*shape)
    with torch.inference_mode():
        ref = reference_forward(model, x, return_extras=True)
        fast = model(x)
        extras = model(x, return_extras=True)
        _, fast_logits = model.score_patches(x)
    assert torch.allclose(fast, ref["logits"], atol=1e-5, rtol=1e-5)
    assert torch.allclose(extras["logits"], ref["logits"], atol=1e-5, rtol=1e-5)
    assert torch.equal(extras["selected"], ref["selected"])
    assert torch.allclose(fast_logits, ref["patch_logits"].sigmoid(), atol=1e-5)
    for a, b in zip(extras["features_native"], ref["features_native"]):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    # The injection must really change the output here (gamma != 0), else the test proves little.
    assert not torch.allclose(fast, model.detector(x), atol=1e-3)


def test_training_forward_is_the_reference():
    """Training mode keeps the original path (BN batch statistics): identical to the reference."""
    torch.manual_seed(0)
    model = build_model("na_irstd", "tiny").train()
    x = torch.randn(2, 1, 64, 64)
    torch.manual_seed(1)
    out = model(x)
    torch.manual_seed(1)
    ref = reference_forward(model, x)
    assert torch.allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize("name", ["detector", "detector_ds2", "dense_cnn"])
def test_eval_folding_matches_the_module_sequence(name):
    """Eval ConvBNAct / BasicBlock / DWSepBlock (BN folded, in-place residual) = the plain modules."""
    torch.manual_seed(0)
    model = _trained_like(build_model(name, "tiny"))
    x = torch.randn(2, 1, 64, 96)
    with torch.inference_mode():
        fast = model(x)
        with unfused():
            ref = model(x)
    assert torch.allclose(fast, ref, atol=1e-5, rtol=1e-5)
    assert not torch.equal(fast, ref)  # the folded path really ran


def test_compiled_forward_matches_reference(monkeypatch):
    """The compiled model (dynamo-traced eval fast path) equals the reference to 1e-5."""
    from nairstd.compiling import compile_model

    monkeypatch.setenv("NAIRSTD_COMPILE_BACKEND", "eager")  # trace only: seconds, not a minute
    torch.manual_seed(0)
    model = _trained_like(build_model("na_irstd", "tiny"))
    x = torch.randn(1, 1, 64, 96)
    torch._dynamo.reset()
    with torch.inference_mode():
        ref = reference_forward(model, x)
        out = compile_model(model)(x)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)
