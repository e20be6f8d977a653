"""A run's training batches: the sample order of each epoch is a function of (seed, epoch), so a
resumed run sees the same batches as an uninterrupted one; under torchrun each process takes
its share (DistributedSampler) of the global batch."""

from __future__ import annotations

import math

from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from nairstd.data.dataset import AugmentConfig, IRSTDDataset
from nairstd.data.index import DatasetIndex
from nairstd.hardneg import load_mined
from nairstd.protocols import NATIVE
from nairstd.train.config import TrainConfig


def planned_steps(cfg: TrainConfig, samples_per_rank: int, world: int = 1) -> tuple[int, int]:
    """(steps per epoch, total optimiser steps) of a run whose process sees `samples_per_rank`
    training samples per epoch: whole batches per epoch (capped by epoch_steps), epochs of
    them, capped by max_steps."""
    rank_batch = max(1, cfg.batch_size // world)
    per_epoch = max(1, samples_per_rank // rank_batch)
    if cfg.epoch_steps:
        per_epoch = min(per_epoch, cfg.epoch_steps)
    total = cfg.epochs * per_epoch
    return per_epoch, (min(total, cfg.max_steps) if cfg.max_steps else total)


class TrainBatches:
    """The train split as per-epoch batches of sample indices, and the run's length in steps."""

    def __init__(self, cfg: TrainConfig, index: DatasetIndex, world: int, rank: int) -> None:
        if cfg.protocol == NATIVE and cfg.crop_size is None and cfg.batch_size > 1:
            raise ValueError("native-protocol training with batch_size > 1 needs a crop_size")
        augment = AugmentConfig(
            crop_size=cfg.crop_size,
            target_crop_p=cfg.target_crop_p,
            scale_range=(cfg.scale_min, cfg.scale_max),
            background_p=cfg.background_p,
            frame_stats=cfg.frame_stats,
            clutter_p=cfg.clutter_p,
            clutter_frames=cfg.clutter_frames,
            clutter_mined=load_mined(cfg.clutter_mined) if cfg.clutter_mined else None,
        )
        self.dataset = IRSTDDataset(
            index,
            "train",
            protocol=cfg.protocol,
            train=True,
            augment=augment,
            size=cfg.image_size,
            seed=cfg.seed,
        )
        self.workers = cfg.workers
        if cfg.workers > 0:
            # Read every image once here: forked workers inherit the cache, so later epochs
            # (a new loader each) do not decode the files again.
            for stem in self.dataset.stems:
                self.dataset.load_pair(stem)
        self.sampler = DistributedSampler(
            self.dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed
        )
        self.rank_batch = max(1, cfg.batch_size // world)
        self.steps_per_epoch, self.total_steps = planned_steps(cfg, len(self.sampler), world)
        self.n_epochs = math.ceil(self.total_steps / self.steps_per_epoch)

    def epoch(self, epoch: int) -> list[list[int]]:
        """This process's batches of `epoch` (augmentations of the epoch too)."""
        self.dataset.epoch = epoch
        self.sampler.set_epoch(epoch)
        indices = list(self.sampler)
        b = self.rank_batch
        if len(indices) < b:
            return [indices]
        return [indices[i * b : (i + 1) * b] for i in range(self.steps_per_epoch)]

    def loader(self, batches: list[list[int]]) -> DataLoader:
        return DataLoader(self.dataset, batch_sampler=batches, num_workers=self.workers)
