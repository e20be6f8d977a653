"""Evaluate a model on a dataset split under a protocol: SPEC §6 metrics, plus Top-K coverage and
precision of the selected patches for native-branch models (SPEC §2.3).

    from nairstd.train import evaluate_checkpoint
    result = evaluate_checkpoint("outputs/runs/<run-id>", "SIRST", split="test")

Under ``resize256`` images are evaluated in batches at 256x256; under ``native`` one at a time at
full resolution (the model pads to its patch multiple and crops back), metrics at original size.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from nairstd.compiling import compile_model, should_compile
from nairstd.data.dataset import IRSTDDataset
from nairstd.data.index import DatasetIndex, find_dataset
from nairstd.data.preprocess import checkpoint_preprocessing
from nairstd.isolation import IsolationTest, structure_test, suppress_structure_ends
from nairstd.metrics import IRSTDMetrics, TopKCoverage, target_patch_flags
from nairstd.models.layers import pad_to_multiple
from nairstd.models.traits import has_native_branch, pad_multiple, unwrap
from nairstd.operating import operating_point, recorded_protocol
from nairstd.protocols import NATIVE, RESIZE256
from nairstd.train.checkpoint import load_model, resolve_device
from nairstd.zoo import classical_method


def pad_masks(mask: Tensor, multiple: int) -> Tensor:
    """Zero-pad (B, 1, H, W) masks bottom/right to a multiple, as the models pad their input."""
    return pad_to_multiple(mask, multiple)


def patch_labels(mask: Tensor, model: nn.Module, label: str, sigma: float) -> Tensor:
    """Soft or hard patch labels (B, N) on the model's padded patch lattice."""
    from nairstd.models.scoring import hard_patch_labels, soft_patch_labels

    m = unwrap(model)
    padded = pad_masks(mask, pad_multiple(m))
    if label == "soft":
        return soft_patch_labels(padded, m.patch_size, sigma=sigma)
    if label == "hard":
        return hard_patch_labels(padded, m.patch_size)
    raise ValueError(f"label must be 'soft' or 'hard', got {label!r}")


def selected_patches(model: nn.Module, scores: Tensor) -> Tensor:
    """Indices (B, K) of the model's Top-K patches from its scores (B, N)."""
    from nairstd.models.scoring import k_for, select_top_k

    return select_top_k(scores, k_for(scores.shape[1], unwrap(model).top_k))


# Per-image counts returned by evaluate_loader (result["per_image"]): SPEC §6 numerators and
# denominators, so any set-level metric can be recomputed on a resample of the images; "stem"
# names each image, so two arms are paired by name, not by position.
PER_IMAGE_KEYS = (
    "stem",
    "intersection",
    "union",
    "fa_pixels",
    "pixels",
    "n_gt",
    "n_matched",
    "n_false",
    "target_patches",
    "selected_target",
)


def make_loader(
    index: DatasetIndex,
    split: str,
    protocol: str,
    image_size: int = 256,
    batch_size: int = 8,
    limit: int | None = None,
    workers: int = 0,
    preprocessing: dict[str, Any] | None = None,
) -> DataLoader:
    prep = checkpoint_preprocessing({"preprocessing": preprocessing})
    dataset = IRSTDDataset(
        index,
        split,
        protocol=protocol,
        size=image_size,
        normalize=prep["normalize"],
        resize=prep["resize"],
    )
    if limit is not None and limit < len(dataset):
        dataset = Subset(dataset, range(limit))
    # Native protocol: images differ in size, so one at a time.
    bs = 1 if protocol == NATIVE else batch_size
    return DataLoader(dataset, batch_size=bs, shuffle=False, num_workers=workers)


@torch.inference_mode()
def evaluate_loader(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str = "cpu",
    scores_only: bool = False,
    label: str | None = None,
    sigma: float = 8.0,
    amp: bool = False,
    progress: bool = False,
    compile_mode: str = "off",
    threshold: float = 0.5,
    structures: IsolationTest | None = None,
) -> dict[str, Any]:
    """Metrics over every batch of `loader`.

    scores_only (Stage 1): run only the scorer (`score_patches`) and report Top-K coverage,
    precision and (with `label`) the score loss. Otherwise the SPEC §6 metrics on sigmoid > 0.5,
    plus coverage/precision (and score loss with `label`) for native-branch models.
    `threshold`: the probability a pixel must exceed to count as target (the paper's 0.5; a
    calibrated checkpoint's own, nairstd.operating). `structures`: detections the isolation test
    calls structure ends are dropped before scoring, as predict drops them (nairstd.isolation;
    the test reads the model's input, which differs from the image by gain and offset only).
    """
    from nairstd.models.scoring import score_loss

    device = torch.device(device)
    m = unwrap(model)
    was_training = m.training
    m.eval()
    native = has_native_branch(m)
    if scores_only and not native:
        raise ValueError(f"{type(m).__name__} has no scorer: scores_only needs a native branch")
    metrics = IRSTDMetrics(threshold=threshold)
    coverage = TopKCoverage()
    loss_sum, loss_n = 0.0, 0
    use_amp = amp and device.type == "cuda"
    fwd = m
    if not scores_only and should_compile(compile_mode, len(loader.dataset), device):
        fwd = compile_model(m)  # the forward only; score_patches stays eager
    iterator = loader
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(loader, desc="eval", leave=False)
    start = time.perf_counter()
    n_images = 0
    # Per-image counts: the claim intervals resample test images (nairstd.reproduce.claims).
    per_image: dict[str, list] = {k: [] for k in PER_IMAGE_KEYS}
    for batch in iterator:
        x = batch["image"].to(device)
        gt = batch["mask"].to(device)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            if scores_only:
                patch_logits, scores = m.score_patches(x)
                selected = selected_patches(m, scores)
                logits = None
            elif native:
                out = fwd(x, return_extras=True)
                logits, patch_logits = out["logits"], out["patch_logits"]
                selected = out["selected"]
            else:
                logits, patch_logits, selected = fwd(x), None, None
        n_images += len(x)
        per_image["stem"].extend(batch.get("stem") or [""] * len(x))  # pairs arms by name
        if logits is not None:
            probs = torch.sigmoid(logits.float()).cpu().numpy()[:, 0]
            masks = gt.cpu().numpy()[:, 0] > 0.5
            if structures is not None:
                inputs = x.float().cpu().numpy()[:, 0]
                probs = np.stack(
                    [
                        suppress_structure_ends(
                            image[: p.shape[0], : p.shape[1]], p, threshold, structures
                        )[0]
                        for image, p in zip(inputs, probs)
                    ]
                )
            for prob, mask in zip(probs, masks):
                before = (metrics.intersection, metrics.union, metrics.fa_pixels)
                match = metrics.update(prob, mask)
                per_image["intersection"].append(metrics.intersection - before[0])
                per_image["union"].append(metrics.union - before[1])
                per_image["fa_pixels"].append(metrics.fa_pixels - before[2])
                per_image["pixels"].append(int(mask.size))
                per_image["n_gt"].append(match.n_gt)
                per_image["n_matched"].append(match.n_matched)
                per_image["n_false"].append(len(match.unmatched_pred))
        if selected is not None:
            padded = pad_masks(gt, pad_multiple(m)).cpu().numpy()[:, 0] > 0.5
            for sel, mask in zip(selected.cpu().numpy(), padded):
                flags = target_patch_flags(mask, m.patch_size)
                coverage.update(sel, flags)
                per_image["target_patches"].append(int(flags.sum()))
                per_image["selected_target"].append(int(flags[sel].sum()))
            if label is not None:
                labels = patch_labels(gt, m, label, sigma)
                loss_sum += float(score_loss(patch_logits.float(), labels)) * len(x)
                loss_n += len(x)
    elapsed = time.perf_counter() - start
    if was_training:
        m.train()
    result: dict[str, Any] = {}
    if not scores_only:
        result.update(metrics.compute())
    if native:
        cov = coverage.compute()
        result.update(
            coverage=cov["coverage"],
            precision=cov["precision"],
            n_target_patches=cov["n_target_patches"],
            top_k=int(selected.shape[1]) if selected is not None else None,
        )
        if loss_n:
            result["score_loss"] = loss_sum / loss_n
    result["n_images"] = n_images
    result["seconds"] = elapsed
    result["per_image"] = {k: v for k, v in per_image.items() if v}
    return result


def evaluate_model(
    model: nn.Module,
    dataset: str | os.PathLike | DatasetIndex,
    split: str = "test",
    protocol: str = RESIZE256,
    image_size: int = 256,
    batch_size: int = 8,
    device: str | torch.device | None = "auto",
    limit: int | None = None,
    scores_only: bool = False,
    label: str | None = None,
    sigma: float = 8.0,
    progress: bool = False,
    data_root: str | None = None,
    compile_mode: str = "off",
    preprocessing: dict[str, Any] | None = None,
    threshold: float = 0.5,
    structures: IsolationTest | None = None,
) -> dict[str, Any]:
    """Evaluate `model` on a split of a dataset (name, folder or DatasetIndex); see evaluate_loader.

    `preprocessing`: the input preprocessing the weights expect (nairstd.data.preprocess; None: ours).
    """
    index = dataset if isinstance(dataset, DatasetIndex) else find_dataset(dataset, data_root)
    device = resolve_device(device)
    model = unwrap(model).to(device)
    loader = make_loader(
        index, split, protocol, image_size, batch_size, limit, preprocessing=preprocessing
    )
    result = evaluate_loader(
        model,
        loader,
        device,
        scores_only=scores_only,
        label=label,
        sigma=sigma,
        progress=progress,
        compile_mode=compile_mode,
        threshold=threshold,
        structures=structures,
    )
    return {
        "dataset": index.name,
        "split": split,
        "protocol": protocol,
        "threshold": threshold,
        "reject_structures": structures.to_dict() if structures else None,
        **result,
    }


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    dataset: str | os.PathLike | DatasetIndex,
    split: str = "test",
    protocol: str | None = None,
    threshold: float | None = None,
    reject_structures: str = "auto",
    **kwargs: Any,
) -> dict[str, Any]:
    """Evaluate a checkpoint file or run folder (its best.pt); keywords as evaluate_model.

    The checkpoint's own input preprocessing (e.g. imported peer weights: /255 at 256x256) is used.
    protocol None: the one the checkpoint records (nairstd.operating, as `predict` runs it), else
    resize256, the paper's (a checkpoint trained at native resolution scored on 256x256 resizes
    would be judged on inputs it never saw). `protocol_source` says which: option, checkpoint or
    default. threshold None: the checkpoint's operating threshold (a calibrated one, the model
    card's), as `predict` uses it, else 0.5; `threshold_source` says which. reject_structures
    (auto, on, off): the isolation test as predict applies it (auto: as the checkpoint records).
    """
    device = resolve_device(kwargs.pop("device", "auto"))
    model, ckpt = load_model(checkpoint, device)
    source = "option" if protocol else "checkpoint" if recorded_protocol(ckpt) else "default"
    protocol = protocol or recorded_protocol(ckpt) or RESIZE256
    has_own = ckpt.get("threshold") is not None
    threshold_source = "option" if threshold is not None else "checkpoint" if has_own else "default"
    _, threshold = operating_point(ckpt, protocol, threshold)  # validates 0 < threshold < 1
    kwargs.setdefault("structures", structure_test(reject_structures, ckpt))
    prep = checkpoint_preprocessing(ckpt)
    if "image_size" not in kwargs and prep["input_size"]:
        kwargs["image_size"] = int(prep["input_size"])  # the size the weights expect
    elif "image_size" not in kwargs and "image_size" in (ckpt.get("config") or {}):
        kwargs["image_size"] = ckpt["config"]["image_size"]  # the size it was trained at
    kwargs.setdefault("preprocessing", prep)
    result = evaluate_model(
        model, dataset, split, protocol, device=device, threshold=threshold, **kwargs
    )
    return {
        "checkpoint": ckpt["path"],
        "model": ckpt["model"],
        "size": ckpt.get("size"),
        **result,
        "protocol_source": source,
        "threshold_source": threshold_source,
        "preprocessing": prep,
    }


def topk_coverage_curve(
    model: nn.Module,
    dataset: str | os.PathLike | DatasetIndex,
    ks: tuple[int, ...] = (1, 2, 3, 5, 8, 16),
    split: str = "test",
    protocol: str = RESIZE256,
    image_size: int = 256,
    device: str | torch.device | None = "auto",
    data_root: str | None = None,
) -> list[dict[str, Any]]:
    """Top-K coverage and precision of a scorer for several K (one scoring pass; Fig. 7)."""
    index = dataset if isinstance(dataset, DatasetIndex) else find_dataset(dataset, data_root)
    device = resolve_device(device)
    m = unwrap(model).to(device).eval()
    from nairstd.models.scoring import select_top_k

    loader = make_loader(index, split, protocol, image_size)
    meters = {k: TopKCoverage() for k in ks}
    with torch.inference_mode():
        for batch in loader:
            _, scores = m.score_patches(batch["image"].to(device))
            padded = pad_masks(batch["mask"], pad_multiple(m)).numpy()[:, 0] > 0.5
            flags = [target_patch_flags(mask, m.patch_size) for mask in padded]
            for k, meter in meters.items():
                sel = select_top_k(scores, min(k, scores.shape[1])).cpu().numpy()
                for s, f in zip(sel, flags):
                    meter.update(s, f)
    rows = []
    for k, meter in meters.items():
        c = meter.compute()
        rows.append({"K": k, "coverage": c["coverage"], "precision": c["precision"]})
    return rows


def finite(x: float | None) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


__all__ = [
    "evaluate_checkpoint",
    "evaluate_loader",
    "evaluate_model",
    "make_loader",
    "patch_labels",
    "topk_coverage_curve",
]


def evaluate_classical(
    method: str | Any,
    dataset: str | os.PathLike | DatasetIndex,
    split: str = "test",
    protocol: str = RESIZE256,
    limit: int | None = None,
    data_root: str | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """SPEC §6 metrics of a training-free method (a CLASSICAL name, or `fn(image [0,1]) -> map`),
    its map binarised at > `threshold`."""
    fn = classical_method(method) if isinstance(method, str) else method
    if fn is None:
        raise ValueError(f"unknown classical method {method!r}")
    index = dataset if isinstance(dataset, DatasetIndex) else find_dataset(dataset, data_root)
    data = IRSTDDataset(index, split, protocol=protocol)
    stems = data.stems[:limit] if limit else data.stems
    metrics = IRSTDMetrics(threshold=threshold)
    start = time.perf_counter()
    for stem in stems:
        image, mask = data.load_pair(stem)
        metrics.update(np.clip(fn(image.astype(np.float32)), 0.0, 1.0), mask)
    result = metrics.compute()
    elapsed = time.perf_counter() - start
    name = method if isinstance(method, str) else getattr(method, "__name__", "method")
    return {
        "dataset": index.name,
        "split": split,
        "protocol": protocol,
        "threshold": threshold,
        "method": name,
        **result,
        "seconds": elapsed,
        "seconds_per_image": elapsed / len(stems),
    }
