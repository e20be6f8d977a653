"""The `--compile auto` rule (nairstd.compiling.should_compile)."""

from __future__ import annotations

import pytest

from nairstd.compiling import AUTO_MIN_IMAGES, AUTO_MIN_IMAGES_CUDA, should_compile


def test_auto_compiles_only_long_runs():
    assert not should_compile("auto", AUTO_MIN_IMAGES - 1, "cpu")
    assert should_compile("auto", AUTO_MIN_IMAGES, "cpu")
    assert should_compile("auto", AUTO_MIN_IMAGES_CUDA, "cuda")
    assert not should_compile("auto", AUTO_MIN_IMAGES_CUDA - 1, "cuda")
    assert should_compile("on", 1) and not should_compile("off", 10**6)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="compile must be one of"):
        should_compile("sometimes", 10)
