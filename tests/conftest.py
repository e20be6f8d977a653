"""Shared fixtures: the real datasets beside the checkout, and small on-disk datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = (REPO / ".." / "shared" / "datasets").resolve()
SIRST = SHARED_DATASETS / "SIRST"


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module (`pytestmark = pytest.mark.usefixtures("one_thread")`):
    on tiny tensors it is as fast, and immune to OpenMP spin-waits on a CPU shared with other jobs."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def sirst_root() -> Path:
    if not (SIRST / "images").is_dir():
        pytest.skip(f"real SIRST data not found at {SIRST} (read-only input beside the checkout)")
    return SIRST


@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path_factory, monkeypatch):
    """Generated data and outputs go to temporary folders, never into the checkout."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("NAIRSTD_GENERATED", str(base / "generated"))
    monkeypatch.setenv("NAIRSTD_OUTPUTS", str(base / "outputs"))
    monkeypatch.delenv("NAIRSTD_DATA", raising=False)


def write_toolbox_dataset(root: Path, name: str, n: int = 6, size=(40, 48), lists=True) -> Path:
    """A tiny layout-(b) dataset: one 2x2 target per image at a known place."""
    folder = root / name
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(n):
        image = np.full(size, 40, np.uint8)
        mask = np.zeros(size, np.uint8)
        y, x = 5 + i, 7 + 2 * i
        image[y : y + 2, x : x + 2] = 250
        mask[y : y + 2, x : x + 2] = 255
        Image.fromarray(image).save(folder / "images" / f"img{i}.png")
        Image.fromarray(mask).save(folder / "masks" / f"img{i}.png")
    if lists:
        (folder / "img_idx").mkdir()
        (folder / "img_idx" / f"train_{name}.txt").write_text(
            "\n".join(f"img{i}" for i in range(n - 2))
        )
        (folder / "img_idx" / f"test_{name}.txt").write_text(f"img{n - 2}\nimg{n - 1}\n")
    return folder
