"""Training configuration (SPEC §3); the per-profile settings live in `nairstd.profiles`.

A `TrainConfig` says everything that changes a run's result; its hash names the run's folder in
the cache (`outputs/runs/<run-id>/`), so a notebook asking for the same config reuses the run.
Fields that do not change results (workers, device, checkpoint interval) are not hashed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nairstd.profiles import get_profile
from nairstd.protocols import PROTOCOLS, RESIZE256

STAGES = ("1", "2", "one")
LABELS = ("soft", "hard")
# "paper": the loss each method's paper prescribes (Na-IRSTD variants: L_seg = BCE + Dice, SPEC
# §3; the baselines: `model.loss`, e.g. SoftIoU with deep supervision); "bce_dice": one common
# loss for every model (the variant is named in the tables when used).
LOSSES = ("paper", "bce_dice")

# Fields that never change what a run computes: left out of the run-id hash.
NOT_HASHED = ("workers", "device", "threads", "ckpt_every", "progress_every", "profile")
# Fields added after runs were cached: hashed only when they differ from these defaults, so the
# runs trained before they existed keep their ids (the default reproduces the old behaviour).
HASHED_WHEN_SET: dict[str, Any] = {
    "scale_min": 1.0,
    "scale_max": 1.0,
    "background_p": 0.0,
    "fa_weight": 0.0,
    "frame_stats": False,
    "optim": "official",
    "clutter_p": 0.0,
    "clutter_frames": 64,
    "clutter_mined": "",
}


@dataclass
class TrainConfig:
    """One training run. Stage "1" trains the native branch + scorer with L_score; "2" the full
    model from a Stage-1 run (scorer frozen, L_seg); "one" everything from scratch (L_seg + L_score;
    models without a native branch, e.g. the baselines, train with L_seg alone)."""

    model: str = "na_irstd"  # registered model name (nairstd.models.list_models())
    size: str = "tiny"  # model size preset: "tiny" (CPU) or "base" (SPEC §2.1 widths)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # extra build_model keywords
    top_k: int | float | None = None  # K selected patches (None: the model's default, 5)
    dataset: str = "SIRST"  # dataset name or folder (nairstd.data.find_dataset)
    stage: str = "2"  # "1", "2" or "one"
    label: str = "soft"  # patch labels for L_score: "soft" (Eq. 10-11) or "hard" (ablation)
    sigma: float = 8.0  # soft-label decay sigma in px (Eq. 10)
    score_weight: float = 1.0  # weight of L_score in the one-stage loss L_seg + w * L_score
    init_from: str | None = None  # Stage 2: Stage-1 run folder or checkpoint (None: find/train it)
    # Stage 2 without init_from: length of the Stage-1 run it starts from (None: the profile's)
    stage1_epochs: int | None = None
    stage1_max_steps: int | None = None
    protocol: str = RESIZE256  # "resize256" (images resized to image_size) or "native"
    image_size: int = 256  # side of the resized images under resize256
    crop_size: int | None = 128  # square training crop (None: whole images; needs equal sizes)
    target_crop_p: float = 0.5  # probability a training crop is centred on a target
    # Scale augmentation (nairstd.data.augment): each training image is rescaled by a factor
    # drawn log-uniformly in [scale_min, scale_max] before the crop (both 1.0: off).
    scale_min: float = 1.0
    scale_max: float = 1.0
    # Probability that a training sample is target-free: the frame with its targets inpainted
    # out (nairstd.data.background), rescaled and cropped like the others (0.0: off).
    background_p: float = 0.0
    # Weight of the false-alarm loss on target-free samples (nairstd.losses; 0.0: off).
    fa_weight: float = 0.0
    # Standardise each training crop with the mean / std of its whole (rescaled) frame, as
    # `predict` standardises a whole frame, instead of the crop's own (False: the crop's).
    frame_stats: bool = False
    # Probability that a training sample comes from a generated clutter frame (urban / road
    # scenes at sensor size with 0-4 targets; nairstd.data.synthetic.clutter.TRAIN_CLUTTER, a
    # seed apart from the OOD check's sets), its crop often on the frame's brightest structure
    # ends (nairstd.data.dataset.IRSTDDataset.clutter_item; 0.0: off), and how many such frames.
    clutter_p: float = 0.0
    clutter_frames: int = 64
    # A model-mined hard-negative record (nairstd.hardneg.write_mined; its name is its content's
    # digest, so the run id follows the centres): clutter crops on that model's false targets
    # instead of the brightest pixels ("": none).
    clutter_mined: str = ""
    epochs: int = 20  # passes over the training split
    batch_size: int = 8  # global batch (split over the processes under torchrun)
    epoch_steps: int | None = None  # optional cap on the steps of each epoch (short epochs)
    max_steps: int | None = None  # optional cap on the total optimiser steps
    lr_stage1: float = 1e-3  # Stage 1 (native branch + scorer)
    lr_main: float = 5e-4  # Stage 2 / one-stage: backbone, decoders, injection (and all, one-stage)
    lr_native: float = 1e-4  # Stage 2: native branch (the smaller rate)
    lr_gamma: float | None = None  # injection scales gamma_l (None: their group's lr)
    loss: str = "paper"  # "paper": each method's own loss; "bce_dice": BCE + Dice for every model
    # "official": a baseline trains with its authors' optimiser and schedule (train/recipes.py);
    # "common": Adam at lr_main with the cosine schedule, as our models always do.
    optim: str = "official"
    weight_decay: float = 0.0  # Adam weight decay
    min_lr_ratio: float = 0.01  # cosine schedule floor, as a fraction of each group's lr
    val_every: int = 1  # validate every N epochs (and after the last one)
    val_limit: int | None = None  # validate on the first N val images only (None: all)
    seed: int = 0  # model init, sampling order and augmentation
    amp: bool = False  # mixed precision (float16 autocast + grad scaling), used on CUDA only
    workers: int = 0  # DataLoader worker processes (not hashed)
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda", "cuda:1" (not hashed)
    # torch CPU threads during the run (None: torch's default; env NAIRSTD_THREADS overrides,
    # 0 = torch's default). smoke/quick use 1: on a CPU shared with other jobs, two OpenMP
    # threads that wait for each other run 5-10x slower than one thread, which loses only ~1.4x
    # on an idle 2-core machine.
    threads: int | None = None
    ckpt_every: int = 50  # also write last.pt every N optimiser steps, not only per epoch
    progress_every: int = 0  # plain-log line every N steps inside an epoch (0: per epoch only)
    profile: str = "custom"  # the profile these settings came from (label only, not hashed)

    def __post_init__(self) -> None:
        self.stage = str(self.stage)
        if not self.crop_size:
            self.crop_size = None  # 0 from the command line: whole images
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {self.label!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.optim not in ("official", "common"):
            raise ValueError(f"optim must be 'official' or 'common', got {self.optim!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        self.check_numbers()

    def check_numbers(self) -> None:
        """Model-independent ranges (model-dependent ones: `check_model_fit`)."""
        for name in ("epochs", "batch_size", "image_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("crop_size", "epoch_steps", "max_steps", "val_limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1 (or unset), got {value!r}")
        if not 0.0 < self.scale_min <= self.scale_max:
            raise ValueError(
                f"scale range must satisfy 0 < scale_min <= scale_max, got "
                f"{self.scale_min!r}..{self.scale_max!r}"
            )
        if not 0.0 <= self.background_p <= 1.0:
            raise ValueError(f"background_p must lie in 0..1, got {self.background_p!r}")
        if not 0.0 <= self.clutter_p <= 1.0:
            raise ValueError(f"clutter_p must lie in 0..1, got {self.clutter_p!r}")
        if not isinstance(self.clutter_frames, int) or self.clutter_frames < 1:
            raise ValueError(f"clutter_frames must be an integer >= 1, got {self.clutter_frames!r}")
        if self.clutter_mined and not self.clutter_p:
            raise ValueError("clutter_mined needs clutter_p > 0 (it only steers clutter samples)")
        if not self.fa_weight >= 0.0:
            raise ValueError(f"fa_weight must be >= 0, got {self.fa_weight!r}")
        if self.val_every < 1 or self.ckpt_every < 1:
            raise ValueError("val_every and ckpt_every must be >= 1")
        if not isinstance(self.model_overrides, dict):
            raise ValueError(
                f"model_overrides must be a JSON object / dict, got {self.model_overrides!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def build_overrides(self) -> dict[str, Any]:
        """Keywords for `build_model(model, size, **overrides)`."""
        overrides = dict(self.model_overrides)
        if self.top_k is not None:
            overrides["top_k"] = self.top_k
        return overrides

    def hashed_fields(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in self.to_dict().items()
            if k not in NOT_HASHED and not (k in HASHED_WHEN_SET and v == HASHED_WHEN_SET[k])
        }


def config_hash(fields: dict[str, Any], length: int = 8) -> str:
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def profile_settings(profile: str, stage: str) -> dict[str, Any]:
    """The TrainConfig fields a profile sets for a stage (nairstd.profiles.Profile)."""
    stage = str(stage)
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    return get_profile(profile).stage_settings(stage)


def profile_threads(profile: str) -> int | None:
    """CPU threads a profile's runs and evaluations use (None: torch's default)."""
    return get_profile(profile).threads


def env_threads() -> int | None:
    """NAIRSTD_THREADS as an int (None when unset); a bad value is a ValueError naming it."""
    env = os.environ.get("NAIRSTD_THREADS", "").strip()
    if not env:
        return None
    try:
        value = int(env)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"NAIRSTD_THREADS={env!r}: must be a whole number >= 0 (0: torch default)")
    return value


def resolve_threads(n: int | None) -> int | None:
    """`n`, unless the environment variable NAIRSTD_THREADS says otherwise (0: torch default)."""
    env = env_threads()
    if env is not None:
        return env or None
    return n


def check_model_fit(config: TrainConfig) -> None:
    """ValueError unless the model builds with the config's overrides, image_size (resize256)
    and the training crop are at least the multiple the model pads its input to (`pad_multiple`: 32 for the detector and
    na_irstd, 64 for detector_ds2, 8-32 for the baselines but rpcanet's 1; smaller, the image is
    mostly zero padding) and, for models with a native branch, image_size is a multiple of the
    patch size P and 1 <= K <= N = (size / P)^2 (N of the resize256 input; native images vary in
    size and K is capped at their N)."""
    from nairstd.models.traits import pad_multiple
    from nairstd.zoo import build_model

    try:
        model = build_model(config.model, config.size, **config.build_overrides())
    except KeyError as err:
        raise ValueError(str(err.args[0]) if err.args else str(err)) from None
    except TypeError as err:
        raise ValueError(f"model {config.model!r}: {err}") from None
    multiple = pad_multiple(model)
    if config.protocol == RESIZE256 and config.image_size < multiple:
        raise ValueError(
            f"image_size {config.image_size} is too small for {config.model}: it pads its input "
            f"to a multiple of {multiple} (its deepest stride, or its patch size), so a smaller "
            f"image would be mostly zero padding; use at least {multiple}"
        )
    if config.crop_size is not None and config.crop_size < multiple:
        raise ValueError(
            f"crop_size {config.crop_size} is too small for {config.model}: it pads its input to "
            f"a multiple of {multiple}, so a smaller crop would be mostly zero padding; use at "
            f"least {multiple} (or 0: whole images)"
        )
    patch = getattr(model, "patch_size", None)
    if not patch:
        return
    if config.image_size % patch:
        raise ValueError(
            f"image_size {config.image_size} must be a positive multiple of the patch size {patch}"
        )
    n = (config.image_size // patch) ** 2
    k = config.top_k
    if isinstance(k, int) and not 1 <= k <= n:
        raise ValueError(
            f"top_k {k} must lie in 1..{n} (N = ({config.image_size} / {patch})^2 patches)"
        )


@contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` torch CPU threads (None: leave the setting alone); the environment
    variable NAIRSTD_THREADS overrides `n`."""
    n = resolve_threads(n)
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def profile_config(profile: str, stage: str, **fields: Any) -> TrainConfig:
    """A TrainConfig with the profile's settings for `stage`; keyword fields override them
    (None values are ignored, so CLI options left unset keep the profile's value)."""
    values: dict[str, Any] = {**profile_settings(profile, stage), "stage": str(stage)}
    values.update({k: v for k, v in fields.items() if v is not None})
    values["profile"] = profile
    return TrainConfig(**values)
