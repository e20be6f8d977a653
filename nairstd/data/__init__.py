"""Datasets: reading the three on-disk layouts, splits, protocols, synthetic data, IRSTD-Hard."""

from nairstd.data.dataset import PROTOCOLS, AugmentConfig, IRSTDDataset, augment_pair
from nairstd.data.images import DataError, read_image, read_mask, standardize
from nairstd.data.index import DatasetIndex, discover_datasets, find_dataset, open_dataset

__all__ = [
    "PROTOCOLS",
    "AugmentConfig",
    "DataError",
    "DatasetIndex",
    "IRSTDDataset",
    "augment_pair",
    "discover_datasets",
    "find_dataset",
    "open_dataset",
    "read_image",
    "read_mask",
    "standardize",
]
