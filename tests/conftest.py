"""Shared fixtures: the real datasets beside the checkout, and small on-disk datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

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


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A seeded, untrained na_irstd tiny checkpoint (a module may define its own)."""
    return write_tiny_checkpoint(tmp_path / "ckpt.pt")


@pytest.fixture
def dataset(tmp_path) -> Path:
    """A 6-image 64x64 toolbox-layout dataset `tinyset` with split lists."""
    return write_toolbox_dataset(tmp_path / "data", "tinyset", n=6, size=(64, 64))


def write_tiny_checkpoint(path: Path, **overrides) -> Path:
    """A seeded, untrained na_irstd tiny checkpoint at `path` (with model overrides)."""
    from nairstd.io import save_torch
    from nairstd.train.checkpoint import model_checkpoint
    from nairstd.zoo import build_model

    torch.manual_seed(0)
    model = build_model("na_irstd", "tiny", **overrides)
    save_torch(model_checkpoint(model, "na_irstd", "tiny", overrides), path)
    return path


def one_error_line(capsys) -> str:
    """The run printed exactly one `error:` line on stderr and no traceback; returns it."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


def smoke_train_args(data: Path, runs: Path, *extra: str) -> list[str]:
    """`python -m nairstd train` arguments of a one-stage smoke run of na_irstd on the CPU."""
    return [
        "train",
        "--stage",
        "one",
        "--model",
        "na_irstd",
        "--dataset",
        str(data),
        "--profile",
        "smoke",
        "--out",
        str(runs),
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


class LocalNet(nn.Module):
    """A purely local net (receptive field 7 px < the 32 px tiling margin): tiling must be exact."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 5, padding=2)
        )

    def forward(self, x):
        return self.body(x)


def tiny_model(name: str, **overrides) -> nn.Module:
    """A registered model at size tiny, built with seed 0 (training mode)."""
    from nairstd.zoo import build_model

    torch.manual_seed(0)
    return build_model(name, size="tiny", **overrides)


def set_gamma(model: nn.Module, value: float) -> None:
    """Set every injection gamma_l scalar of a NaIRSTD model to `value`."""
    with torch.no_grad():
        for p in model.injection.parameters():
            if p.dim() == 0:  # the gamma_l scalars
                p.fill_(value)


def random_batch(b: int = 2, h: int = 96, w: int = 64, seed: int = 0) -> torch.Tensor:
    """Uniform [0, 1) images (b, 1, h, w) from their own seeded generator."""
    return torch.rand(b, 1, h, w, generator=torch.Generator().manual_seed(seed))


def spot_frames(folder: Path, n: int, seed: int = 0, tiff_every_other: bool = False) -> Path:
    """n target-free 64x80 frames f0, f1, ...: noise around grey 0.3, a bright 3x3 spot and a
    bright row (what a detector may fire on). `tiff_every_other`: odd frames as 16-bit TIFF
    (any image predict reads), the others 8-bit PNG."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        image = np.clip(0.3 + 0.05 * rng.standard_normal((64, 80)), 0, 1)
        y, x = rng.integers(8, 56, 2)
        image[y : y + 3, x : x + 3] = 0.9
        image[rng.integers(0, 64), :] = 0.6
        if tiff_every_other and i % 2:
            Image.fromarray(np.round(image * 65535).astype(np.uint16)).save(folder / f"f{i}.tif")
        else:
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(folder / f"f{i}.png")
    return folder
