"""Torch dataset over a DatasetIndex, for the two evaluation protocols and training.

Protocols (SPEC §5):
  ``resize256`` — every image resized to 256x256 (the paper's protocol); metrics at 256x256.
  ``native``    — full resolution; the model pads to a multiple of its patch size and crops back,
                  so metrics are at each image's original size (evaluate with batch size 1).
Training samples may be cropped to a fixed square (target-centred with probability 0.5) and are
augmented with flips and transposition (SPEC §3).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import Dataset

from nairstd.data.augment import draw_scale, pad_to, rescale_pair
from nairstd.data.background import target_free
from nairstd.data.images import resize_mask_nearest
from nairstd.data.index import DatasetIndex
from nairstd.data.preprocess import normalize_image, resize_input
from nairstd.protocols import PROTOCOLS, RESIZE256


@dataclass
class AugmentConfig:
    crop_size: int | None = None  # square training crop; None keeps the whole (resized) image
    target_crop_p: float = 0.5  # probability that a crop is centred on a random target pixel
    flips: bool = True  # random horizontal and vertical flips
    transpose: bool = True  # random transposition (only when the sample is square)
    scale_range: tuple[float, float] = (1.0, 1.0)  # log-uniform rescale before the crop (1, 1: off)
    background_p: float = 0.0  # probability of a target-free sample (targets inpainted out)
    frame_stats: bool = False  # standardise a crop by its whole (rescaled) frame's mean / std
    clutter_p: float = 0.0  # probability of a generated clutter frame instead (TRAIN_CLUTTER)
    clutter_frames: int = 64  # how many TRAIN_CLUTTER frames those samples are drawn from
    # Model-mined false-target centres per clutter frame (nairstd.hardneg.load_mined): where
    # given, they replace the brightest pixels as the non-target crop centres of that frame.
    clutter_mined: dict[int, np.ndarray] | None = None


class IRSTDDataset(Dataset):
    """Samples of one split: {"image": (1,H,W) standardised, "mask": (1,H,W) 0/1, "stem", ...}.

    `normalize` / `resize` pick another input preprocessing (nairstd.data.preprocess), e.g. the
    `/255` and OpenCV-style resize of imported peer weights; ours by default.
    """

    def __init__(
        self,
        index: DatasetIndex,
        split: str,
        protocol: str = RESIZE256,
        train: bool = False,
        augment: AugmentConfig | None = None,
        size: int = 256,
        seed: int = 0,
        normalize: str = "standardize",
        resize: str = "bilinear",
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
        self.index = index
        self.split = split
        self.stems = index.split(split)
        if not self.stems:
            raise ValueError(f"{index.root}: split {split!r} is empty")
        self.protocol = protocol
        self.train = train
        self.augment = augment or AugmentConfig()
        self.size = size
        self.seed = seed
        self.normalize = normalize
        self.resize = resize
        self.epoch = 0  # set by the trainer so augmentations differ per epoch yet repeat per seed
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._empty: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # inpainted, target-free
        self._clutter: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # generated, by frame index

    def __len__(self) -> int:
        return len(self.stems)

    def load_pair(self, stem: str) -> tuple[np.ndarray, np.ndarray]:
        """(image [0,1], bool mask) under this dataset's protocol, cached in memory."""
        if stem not in self._cache:
            image, mask = self.index.load(stem)
            if self.protocol == RESIZE256:
                image = resize_input(image, (self.size, self.size), self.resize)
                mask = resize_mask_nearest(mask, (self.size, self.size))
            self._cache[stem] = (image, mask)
        return self._cache[stem]

    def target_free_pair(self, stem: str) -> tuple[np.ndarray, np.ndarray]:
        """The frame with its targets inpainted out and an empty mask (cached)."""
        if stem not in self._empty:
            self._empty[stem] = target_free(*self.load_pair(stem), seed=self.seed)
        return self._empty[stem]

    def clutter_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame `index` of the training clutter set (urban / road scenes at 640x512-1920x1080
        with 0-4 targets; nairstd.data.synthetic.clutter.TRAIN_CLUTTER) as (image [0,1], mask),
        resized like the dataset's own frames under resize256; drawn once, then cached."""
        if index not in self._clutter:
            from nairstd.data.synthetic.clutter import TRAIN_CLUTTER, clutter_frame

            frame = clutter_frame(TRAIN_CLUTTER, index)
            image, mask = frame.as_float(), frame.mask
            if self.protocol == RESIZE256:
                image = resize_input(image, (self.size, self.size), self.resize)
                mask = resize_mask_nearest(mask, (self.size, self.size))
            self._clutter[index] = (image, mask)
        return self._clutter[index]

    def __getitem__(self, i: int) -> dict:
        stem = self.stems[i]
        if self.train and self.augment.clutter_p:
            # Its own generator, so the samples that stay on the dataset draw as before.
            pick = np.random.default_rng((self.seed, self.epoch, i, 1))
            if pick.random() < self.augment.clutter_p:
                return self.clutter_item(int(pick.integers(self.augment.clutter_frames)), pick)
        image, mask = self.load_pair(stem)
        # predict standardises a whole frame at once; a crop of a large frame standardised by its
        # own statistics would see another contrast than the same pixels at predict time.
        by_frame = self.train and self.augment.frame_stats and self.normalize == "standardize"
        if self.train:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            aug = self.augment
            # Extra draws only when the options are on, so the default samples stay as before.
            if aug.background_p and rng.random() < aug.background_p:
                image, mask = self.target_free_pair(stem)
            if aug.scale_range != (1.0, 1.0):
                image, mask = rescale_pair(image, mask, draw_scale(*aug.scale_range, rng))
            frame = image  # the whole (rescaled) frame, before padding and crop
            if aug.scale_range != (1.0, 1.0) and aug.crop_size:
                image, mask = pad_to(image, mask, aug.crop_size)
            image, mask = augment_pair(image, mask, aug, rng)
        if by_frame:
            image = (image - frame.mean()) / (frame.std() + 1e-6)
        else:
            image = normalize_image(image, self.normalize)
        return _sample(image, mask, stem)

    def clutter_item(self, index: int, rng: np.random.Generator) -> dict:
        """A training sample from clutter frame `index`: not rescaled (the frames are at sensor
        size already); the crop is centred on a target with probability `target_crop_p`, else on
        one of the frame's brightest pixels with probability 1/2 (the lamp heads, roof corners
        and mast tops where models raise false targets: mined from the pixels, no model needed)
        or, where `clutter_mined` holds the frame, on one of a model's false targets there
        (nairstd.hardneg), else anywhere."""
        aug = self.augment
        frame, mask = self.clutter_pair(index)
        image = frame
        if aug.crop_size:
            centres = None
            if mask.any() and rng.random() < aug.target_crop_p:
                centres = mask
            elif rng.random() < 0.5:
                mined = aug.clutter_mined.get(index) if aug.clutter_mined else None
                if mined is not None and len(mined):
                    centres = np.zeros(frame.shape, bool)
                    rows, cols = mined[:, 0], mined[:, 1]
                    inside = (rows < frame.shape[0]) & (cols < frame.shape[1])
                    if not inside.all():
                        raise ValueError(
                            f"mined centres of clutter frame {index} lie outside its "
                            f"{frame.shape[1]}x{frame.shape[0]} pixels (mined on other frames?)"
                        )
                    centres[rows, cols] = True
                else:
                    centres = frame >= np.quantile(frame, 0.9995)
            centred = 1.0 if centres is not None else 0.0
            image, mask = random_crop(image, mask, aug.crop_size, centred, rng, centres=centres)
        image, mask = augment_pair(image, mask, replace(aug, crop_size=None), rng)
        if aug.frame_stats and self.normalize == "standardize":
            image = (image - frame.mean()) / (frame.std() + 1e-6)
        else:
            image = normalize_image(image, self.normalize)
        return _sample(image, mask, f"clutter_{index:05d}")


def _sample(image: np.ndarray, mask: np.ndarray, stem: str) -> dict:
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None],
        "mask": torch.from_numpy(np.ascontiguousarray(mask)).float()[None],
        "stem": stem,
        "orig_hw": torch.tensor(mask.shape),
    }


def augment_pair(
    image: np.ndarray, mask: np.ndarray, config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random crop (target-centred with probability p), flips and transpose, applied jointly."""
    if config.crop_size:
        image, mask = random_crop(image, mask, config.crop_size, config.target_crop_p, rng)
    if config.flips and rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if config.flips and rng.random() < 0.5:
        image, mask = image[::-1], mask[::-1]
    if config.transpose and image.shape[0] == image.shape[1] and rng.random() < 0.5:
        image, mask = image.T, mask.T
    return image, mask


def random_crop(
    image: np.ndarray,
    mask: np.ndarray,
    size: int,
    target_p: float,
    rng: np.random.Generator,
    centres: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A size x size crop, holding a target pixel with probability `target_p` (`centres`: pick
    that pixel among these instead of the mask's); images smaller than the crop are zero-padded
    (reflect would copy targets)."""
    h, w = image.shape
    if h < size or w < size:
        pad_h, pad_w = max(0, size - h), max(0, size - w)
        image = np.pad(image, ((0, pad_h), (0, pad_w)), mode="constant")
        mask = np.pad(mask, ((0, pad_h), (0, pad_w)), mode="constant")
        h, w = image.shape
    targets = np.argwhere(mask if centres is None else centres)
    if len(targets) and rng.random() < target_p:
        cy, cx = targets[rng.integers(len(targets))]
        # Place the target anywhere inside the crop, not always at its centre.
        top = int(np.clip(cy - rng.integers(size), 0, h - size))
        left = int(np.clip(cx - rng.integers(size), 0, w - size))
    else:
        top = int(rng.integers(h - size + 1))
        left = int(rng.integers(w - size + 1))
    return image[top : top + size, left : left + size], mask[top : top + size, left : left + size]
