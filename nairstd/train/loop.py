"""The trainer (SPEC §3): one model-agnostic loop for the three stages and the baselines.

    from nairstd.train import profile_config, train
    result = train(profile_config("quick", "1", dataset="SIRST", label="soft"))
    result = train(profile_config("quick", "2", dataset="SIRST"))   # finds the Stage-1 run

Stage "1": native branch + scorer only (`score_patches`), L_score on soft or hard patch labels,
    Adam at lr_stage1; the model kept is the best on validation Top-K coverage (ties: score loss).
Stage "2": the full model initialised from a Stage-1 checkpoint; scorer frozen; L_seg; two
    parameter groups, main (backbone, decoders, injection) at lr_main and native branch at
    lr_native; a fresh cosine schedule. Kept: best validation IoU.
Stage "one": everything from scratch, L_seg + score_weight * L_score (scorer trainable) for
    native-branch models, L_seg alone for any other model returning logits (the baselines).
Schedules are per-step cosine from each group's lr down to min_lr_ratio x lr.

Runs live in the cache (`nairstd.train.runs`): a finished run is returned at once; an interrupted
one resumes from last.pt (written every `ckpt_every` steps and after each epoch) exactly where it
stopped: the sample order and augmentations are functions of (seed, epoch), and the RNG states,
the optimiser, the scheduler and the epoch's running sums travel in the checkpoint.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from nairstd.data.dataset import AugmentConfig, IRSTDDataset
from nairstd.data.images import DataError
from nairstd.data.index import DatasetIndex, find_dataset
from nairstd.io import save_torch, write_json, write_text
from nairstd.profiles import PROFILES
from nairstd.train import ddp
from nairstd.train.checkpoint import (
    build_from_checkpoint,
    has_native_branch,
    load_trusted,
    model_checkpoint,
    read_checkpoint,
    resolve_device,
    unwrap,
)
from nairstd.train.config import TrainConfig, check_model_fit, cpu_threads, profile_config
from nairstd.train.evaluate import evaluate_loader, make_loader, patch_labels
from nairstd.train.losses import false_alarm_loss, seg_loss
from nairstd.train.runs import (
    RunResult,
    dataset_identity,
    is_complete,
    load_result,
    run_dir,
    run_key,
    run_lock,
)

Logger = Callable[[str], None]


class Stage1Missing(RuntimeError):
    """Stage 2 was asked for without a Stage-1 run to start from."""


# --------------------------------------------------------------------------------------------------
# Stage-1 lookup for Stage 2
# --------------------------------------------------------------------------------------------------
def stage1_config_for(config: TrainConfig) -> TrainConfig:
    """The Stage-1 config a Stage-2 config starts from: the same profile's Stage-1 settings
    (epochs, learning rate, validation interval; or the Stage-1 length the Stage-2 config carries
    from a comparison budget) with the Stage-2 config's model, data handling (protocol, image and
    crop size, batch, validation subset), labels and seed."""
    if config.profile not in PROFILES:
        raise Stage1Missing(
            "Stage 2 needs init_from (a Stage-1 run folder or checkpoint) when its config does not "
            f"come from a profile (profile={config.profile!r})"
        )
    length: dict[str, Any] = {}
    if config.stage1_epochs is not None or config.stage1_max_steps is not None:
        # A comparison budget (nairstd.profiles.Budget) sets the Stage-1 length and the
        # validation interval of both stages.
        length = dict(
            epochs=config.stage1_epochs,
            max_steps=config.stage1_max_steps,
            val_every=config.val_every,
        )
    return profile_config(
        config.profile,
        "1",
        model=config.model,
        size=config.size,
        model_overrides=dict(config.model_overrides),
        top_k=config.top_k,
        dataset=config.dataset,
        label=config.label,
        sigma=config.sigma,
        protocol=config.protocol,
        image_size=config.image_size,
        crop_size=config.crop_size or 0,
        target_crop_p=config.target_crop_p,
        scale_min=config.scale_min,
        scale_max=config.scale_max,
        background_p=config.background_p,
        batch_size=config.batch_size,
        val_limit=config.val_limit,
        seed=config.seed,
        workers=config.workers,
        device=config.device,
        threads=config.threads,
        loss=config.loss,
        **length,
    )


def stage1_command(config: TrainConfig) -> str:
    return (
        f"python -m nairstd train --stage 1 --model {config.model} --size {config.size} "
        f"--dataset {config.dataset} --label {config.label} --profile {config.profile}"
    )


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    # Plain tensors/lists only, so last.pt loads with weights_only=True.
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, mt, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": [version, list(mt), gauss_next],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(
        (kind, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, gauss)
    )
    version, mt, gauss_next = state["python"]
    random.setstate((version, tuple(mt), gauss_next))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def interactive() -> bool:
    """True in a terminal or a Jupyter kernel: show tqdm bars; plain epoch lines otherwise."""
    if sys.stderr.isatty():
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class _ScoreAdapter(nn.Module):
    """Makes `score_patches` the forward, so DistributedDataParallel syncs Stage-1 gradients."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.module = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.module.score_patches(x)


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """Optimiser groups of a stage; parameters outside them get requires_grad False.

    "1": native + scorer at lr_stage1. "2": main at lr_main, native at lr_native (scorer frozen).
    "one": every parameter at lr_main.
    """
    stage = config.stage
    native = has_native_branch(model)
    if stage in ("1", "2") and not native:
        raise ValueError(
            f"stage {stage} needs a model with a native branch and scorer (na_irstd, dense_cnn); "
            f"{config.model!r} has none: train it with --stage one"
        )
    for p in model.parameters():
        p.requires_grad_(True)
    if native:
        model.freeze_scorer(stage == "2")
    if stage == "1":
        trainable = [*model.native_parameters(), *model.scorer_parameters()]
        ids = {id(p) for p in trainable}
        for p in model.parameters():
            if id(p) not in ids:
                p.requires_grad_(False)
        return [{"params": trainable, "lr": config.lr_stage1, "name": "native+scorer"}]
    if stage == "2":
        groups = [
            {"params": list(model.main_parameters()), "lr": config.lr_main, "name": "main"},
            {"params": list(model.native_parameters()), "lr": config.lr_native, "name": "native"},
        ]
    else:
        groups = [{"params": list(model.parameters()), "lr": config.lr_main, "name": "all"}]
    gammas = injection_gammas(model)
    if config.lr_gamma is not None and gammas:
        # gamma_l gets its own rate: with Adam a step moves a parameter by about its lr, so at
        # lr_main the injection stays near its init for a short run (README, "Injection gamma").
        ids = {id(p) for p in gammas}
        for group in groups:
            group["params"] = [p for p in group["params"] if id(p) not in ids]
        groups.append({"params": gammas, "lr": config.lr_gamma, "name": "gamma"})
    return groups


def injection_gammas(model: nn.Module) -> list[nn.Parameter]:
    """The injection scales gamma_l (Eq. 16), stage order; empty for models without injection."""
    injection = getattr(unwrap(model), "injection", None)
    if injection is None:
        return []
    return [block.gamma for block in injection.blocks]


def cosine_lambda(total_steps: int, min_ratio: float) -> Callable[[int], float]:
    def fn(step: int) -> float:
        t = min(step, total_steps) / max(1, total_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return fn


def selection_key(stage: str, val: dict[str, Any]) -> tuple[float, float]:
    """Larger is better. Stage 1: (coverage, -score loss); else (IoU, nIoU)."""

    def num(x: Any, default: float = -math.inf) -> float:
        return default if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

    if stage == "1":
        return (num(val.get("coverage")), -num(val.get("score_loss"), math.inf))
    return (num(val.get("IoU")), num(val.get("nIoU")))


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}", f"step {row['step']}", f"loss {row['loss']:.4f}"]
    if "val_IoU" in row and not pd.isna(row.get("val_IoU")):
        parts.append(
            f"val IoU {row['val_IoU']:.1f} nIoU {row['val_nIoU']:.1f} Pd {row['val_Pd']:.1f} "
            f"Fa {row['val_Fa']:.1f}"
        )
    if "val_coverage" in row and not pd.isna(row.get("val_coverage")):
        parts.append(f"val cov {row['val_coverage']:.1f} prec {row['val_precision']:.1f}")
    if "val_score_loss" in row and not pd.isna(row.get("val_score_loss")):
        parts.append(f"val L_score {row['val_score_loss']:.4f}")
    parts.append(f"lr {row['lr']:.2e}")
    parts.append(f"{row['time_s']:.1f} s")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------------
def train(
    config: TrainConfig,
    runs_dir: str | Path | None = None,
    data_root: str | None = None,
    progress: bool | None = None,
    auto_stage1: bool = True,
    log: Logger | None = None,
    on_step: Callable[[int], None] | None = None,
) -> RunResult:
    """Train `config` (or return its finished run from the cache; resume an interrupted one).

    Stage 2 without `init_from` starts from the matching Stage-1 run of the same profile, which is
    trained first when it is not in the cache (auto_stage1), else Stage1Missing says what to run.
    progress: tqdm bars (None: when interactive). log: where the epoch lines go (default print).
    on_step(global_step) is called after each optimiser step (tests, external monitoring).
    """
    say: Logger = log or (lambda line: print(line, flush=True))
    check_model_fit(config)
    index = find_dataset(config.dataset, data_root)
    if config.stage == "2" and config.init_from is None:
        s1 = stage1_config_for(config)
        s1_dir = run_dir(s1, index, runs_dir)
        if not is_complete(s1_dir):
            if not auto_stage1:
                raise Stage1Missing(
                    f"no finished Stage-1 run for this Stage 2 ({s1_dir.name}); run first:\n  "
                    + stage1_command(config)
                )
            if ddp.env_world()[1] == 0:
                say(f"Stage 2 needs Stage 1 {s1_dir.name}: training it first")
            train(s1, runs_dir, data_root, progress, log=log, on_step=on_step)
        config = config.replace(init_from=str(s1_dir / "best.pt"))
    elif config.stage == "2":
        config = _with_init_label(config.replace(init_from=str(Path(config.init_from).resolve())))
    elif config.init_from is not None:
        config = config.replace(init_from=str(Path(config.init_from).resolve()))
    folder = run_dir(config, index, runs_dir)
    if is_complete(folder):
        return load_result(folder, reused=True)
    with run_lock(folder, enabled=ddp.env_world()[1] == 0):
        if is_complete(folder):  # finished by another process while we waited for the lock
            return load_result(folder, reused=True)
        return _Trainer(config, index, folder, progress, say, on_step).run()


def planned_run_dir(
    config: TrainConfig, runs_dir: str | Path | None = None, data_root: str | None = None
) -> Path | None:
    """The run folder `train(config)` uses, without training anything; None for a Stage 2
    (without init_from) whose Stage-1 run is not finished yet, as its id names that run."""
    index = find_dataset(config.dataset, data_root)
    if config.stage == "2" and config.init_from is None:
        s1_dir = run_dir(stage1_config_for(config), index, runs_dir)
        if not is_complete(s1_dir):
            return None
        config = config.replace(init_from=str(s1_dir / "best.pt"))
    elif config.stage == "2":
        config = _with_init_label(config.replace(init_from=str(Path(config.init_from).resolve())))
    return run_dir(config, index, runs_dir)


def _with_init_label(config: TrainConfig) -> TrainConfig:
    """A Stage 2 given an explicit init takes the label type of that Stage-1 run (its name and
    hash then say which labels the scorer learnt from)."""
    path = Path(config.init_from)
    info = (path if path.is_dir() else path.parent) / "config.json"
    if info.is_file():
        label = json.loads(info.read_text()).get("config", {}).get("label")
        if label in ("soft", "hard"):
            return config.replace(label=label)
    return config


class _Trainer:
    def __init__(
        self,
        config: TrainConfig,
        index: DatasetIndex,
        folder: Path,
        progress: bool | None,
        say: Logger,
        on_step: Callable[[int], None] | None,
    ) -> None:
        self.cfg = config
        self.index = index
        self.folder = folder
        self.progress = interactive() if progress is None else progress
        self.say_raw = say
        self.on_step = on_step

    # -- output (rank 0 only) ------------------------------------------------------------------
    def say(self, line: str) -> None:
        if self.dist.is_main:
            if self.bar is not None:
                from tqdm.auto import tqdm

                tqdm.write(line)
            else:
                self.say_raw(line)

    # -- setup -----------------------------------------------------------------------------------
    def run(self) -> RunResult:
        cfg = self.cfg
        self.bar = None
        self.dist, self.device = ddp.setup(resolve_device(cfg.device))
        with cpu_threads(cfg.threads):
            return self._run()

    def _build(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)
        # Stage 2 starts from a checkpoint; a one-stage run may too (fine-tuning, init_from set).
        if cfg.stage == "2" or (cfg.stage == "one" and cfg.init_from is not None):
            if cfg.init_from is None:
                raise Stage1Missing("Stage 2 needs init_from")
            init = read_checkpoint(cfg.init_from)
            if init["model"] != cfg.model:
                raise ValueError(
                    f"{init['path']}: a {init['model']!r} checkpoint cannot start a "
                    f"{cfg.model!r} Stage 2"
                )
            init = {**init, "size": cfg.size, "overrides": cfg.build_overrides()}
            try:
                model = build_from_checkpoint(init)
            except RuntimeError as err:
                raise ValueError(
                    f"{init['path']}: weights do not fit {cfg.model} size {cfg.size} ({err})"
                ) from err
        else:
            from nairstd.models import build_model

            model = build_model(cfg.model, cfg.size, **cfg.build_overrides())
        self.model = model.to(self.device)
        self.native = has_native_branch(model)
        groups = param_groups(model, cfg)
        self.group_names = [g.pop("name") for g in groups]
        self.optimizer = torch.optim.Adam(groups, weight_decay=cfg.weight_decay)
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)

        fwd: nn.Module = _ScoreAdapter(model) if cfg.stage == "1" else model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            fwd = DistributedDataParallel(fwd, device_ids=ids)
        self.fwd = fwd

        # Data: the sample order per epoch is a function of (seed, epoch) via the sampler.
        if cfg.protocol == "native" and cfg.crop_size is None and cfg.batch_size > 1:
            raise ValueError("native-protocol training with batch_size > 1 needs a crop_size")
        augment = AugmentConfig(
            crop_size=cfg.crop_size,
            target_crop_p=cfg.target_crop_p,
            scale_range=(cfg.scale_min, cfg.scale_max),
            background_p=cfg.background_p,
        )
        self.train_set = IRSTDDataset(
            self.index,
            "train",
            protocol=cfg.protocol,
            train=True,
            augment=augment,
            size=cfg.image_size,
            seed=cfg.seed,
        )
        if cfg.workers > 0:
            # Read every image once here: forked workers inherit the cache, so later epochs
            # (a new loader each) do not decode the files again.
            for stem in self.train_set.stems:
                self.train_set.load_pair(stem)
        world = self.dist.world_size
        self.sampler = DistributedSampler(
            self.train_set, num_replicas=world, rank=self.dist.rank, shuffle=True, seed=cfg.seed
        )
        self.rank_batch = max(1, cfg.batch_size // world)
        n = len(self.sampler)
        self.steps_per_epoch = max(1, n // self.rank_batch)
        if cfg.epoch_steps:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.epoch_steps)
        total = cfg.epochs * self.steps_per_epoch
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total
        self.n_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        ratios = cosine_lambda(self.total_steps, cfg.min_lr_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, ratios)
        val_bs = max(1, cfg.batch_size)
        self.val_loader = make_loader(
            self.index, "val", cfg.protocol, cfg.image_size, val_bs, cfg.val_limit, 0
        )

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        self.sampler.set_epoch(epoch)
        indices = list(self.sampler)
        b = self.rank_batch
        if len(indices) < b:
            return [indices]
        return [indices[i * b : (i + 1) * b] for i in range(self.steps_per_epoch)]

    # -- state -------------------------------------------------------------------------------------
    def _fresh_state(self) -> dict[str, Any]:
        return {
            "epoch": 0,
            "step_in_epoch": 0,
            "global_step": 0,
            "acc": {"loss": 0.0, "seg": 0.0, "score": 0.0, "n": 0},
            "log_rows": [],
            "best_key": None,
            "best_epoch": None,
            "best_val": None,
            "train_time_s": 0.0,
        }

    def _save_last(self) -> None:
        if not self.dist.is_main:
            return
        ckpt = model_checkpoint(
            self.model,
            self.cfg.model,
            self.cfg.size,
            self.cfg.build_overrides(),
            run_id=self.folder.name,
            config=self.cfg.to_dict(),
            epoch=self.state["epoch"],
        )
        ckpt.update(
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            state=self.state,
            rng=_rng_state(),
            world_size=self.dist.world_size,
        )
        save_torch(ckpt, self.folder / "last.pt")

    def _load_last(self) -> bool:
        path = self.folder / "last.pt"
        if not path.is_file():
            return False
        try:
            ckpt = load_trusted(path)
        except DataError as err:
            raise DataError(f"{err}; delete it to restart this run") from err
        if not isinstance(ckpt, dict) or "state" not in ckpt or "rng" not in ckpt:
            raise DataError(f"{path}: not a resume state; delete it to restart this run")
        if ckpt.get("world_size", 1) != self.dist.world_size:
            raise RuntimeError(
                f"{path}: the run was started with {ckpt.get('world_size', 1)} process(es); "
                f"resume it with the same number (now {self.dist.world_size})"
            )
        unwrap(self.model).load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = ckpt["state"]
        _set_rng_state(ckpt["rng"])
        return True

    def _write_config(self) -> None:
        if not self.dist.is_main:
            return
        path = self.folder / "config.json"
        info = {
            "run_id": self.folder.name,
            "config": self.cfg.to_dict(),
            "key": run_key(self.cfg, self.index),
            "dataset": {**dataset_identity(self.index), "root": str(self.index.root)},
        }
        if path.is_file():
            old = json.loads(path.read_text())
            if old.get("key") != info["key"]:
                raise RuntimeError(f"{path}: another config owns this run folder (hash clash)")
            return
        write_json(path, info)

    # -- one step ----------------------------------------------------------------------------------
    def _losses(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        from nairstd.models.scoring import score_loss

        cfg = self.cfg
        if cfg.stage == "1":
            patch_logits, _ = self.fwd(x)
            labels = patch_labels(y, self.model, cfg.label, cfg.sigma)
            loss = score_loss(patch_logits.float(), labels)
            return loss, {"score": float(loss.detach())}
        if self.native and cfg.stage == "one":
            out = self.fwd(x, return_extras=True)
            seg = seg_loss(out["logits"], y, empty_dice=not cfg.fa_weight)
            seg = seg + self._fa_term(out["logits"], y)
            labels = patch_labels(y, self.model, cfg.label, cfg.sigma)
            sc = score_loss(out["patch_logits"].float(), labels)
            loss = seg + cfg.score_weight * sc
            return loss, {"seg": float(seg.detach()), "score": float(sc.detach())}
        own_loss = getattr(self.model, "loss", None)
        if cfg.loss == "paper" and callable(own_loss) and not self.native:
            # A baseline trained with its paper's loss (deep supervision, edge or reconstruction
            # terms need the auxiliary outputs).
            seg = own_loss(self.fwd(x, return_aux=True), y)
        else:
            logits = self.fwd(x)
            seg = seg_loss(logits, y, empty_dice=not cfg.fa_weight) + self._fa_term(logits, y)
        return seg, {"seg": float(seg.detach())}

    def _fa_term(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor | float:
        """fa_weight x the false-alarm loss on the batch's target-free samples (0 when off)."""
        if not self.cfg.fa_weight:
            return 0.0
        return self.cfg.fa_weight * false_alarm_loss(logits, y)

    def _step(self, batch: dict[str, Any]) -> None:
        x = batch["image"].to(self.device, non_blocking=True)
        y = batch["mask"].to(self.device, non_blocking=True)
        with torch.autocast(
            device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp
        ):
            loss, parts = self._losses(x, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss at step {self.state['global_step'] + 1} of {self.folder.name}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        acc = self.state["acc"]
        acc["loss"] += float(loss.detach())
        for k, v in parts.items():
            acc[k] += v
        acc["n"] += 1

    # -- validation --------------------------------------------------------------------------------
    def _validate(self) -> dict[str, Any]:
        cfg = self.cfg
        val = evaluate_loader(
            self.model,
            self.val_loader,
            self.device,
            scores_only=cfg.stage == "1",
            label=cfg.label if self.native else None,
            sigma=cfg.sigma,
            amp=self.use_amp,
        )
        val.pop("per_image", None)  # test-time statistics; not kept in the run's logs
        return val

    # -- the loop ----------------------------------------------------------------------------------
    def _run(self) -> RunResult:
        cfg = self.cfg
        if self.dist.is_main:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._build()
        self._write_config()
        ddp.barrier(self.dist)
        self.state = self._fresh_state()
        resumed = self._load_last()
        if resumed:
            self.say(
                f"{self.folder.name}: resuming at epoch {self.state['epoch'] + 1}, "
                f"step {self.state['global_step']}/{self.total_steps}"
            )
        else:
            self.say(
                f"{self.folder.name}: stage {cfg.stage}, {self.n_epochs} epochs x "
                f"{self.steps_per_epoch} steps (batch {cfg.batch_size}) on {self.device}"
                + (f" x {self.dist.world_size} processes" if self.dist.enabled else "")
            )
        self.model.train()
        st = self.state
        while st["global_step"] < self.total_steps:
            self._train_epoch()
        # A finished run may have been killed between its last checkpoint and metrics.json.
        self._finish()
        return load_result(self.folder, reused=False)

    def _train_epoch(self) -> None:
        cfg, st = self.cfg, self.state
        epoch = st["epoch"]
        self.train_set.epoch = epoch
        batches = self._epoch_batches(epoch)
        n_this = min(len(batches), self.total_steps - epoch * self.steps_per_epoch)
        todo = batches[st["step_in_epoch"] : n_this]
        loader = DataLoader(self.train_set, batch_sampler=todo, num_workers=cfg.workers)
        if self.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=n_this,
                initial=st["step_in_epoch"],
                desc=f"epoch {epoch + 1}/{self.n_epochs}",
                leave=False,
                dynamic_ncols=True,
            )
        t0 = t_epoch = time.perf_counter()
        for batch in loader:
            self._step(batch)
            st["step_in_epoch"] += 1
            st["global_step"] += 1
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix(loss=f"{st['acc']['loss'] / st['acc']['n']:.4f}")
            if cfg.progress_every and st["global_step"] % cfg.progress_every == 0:
                self.say(
                    f"  step {st['global_step']}/{self.total_steps} "
                    f"loss {st['acc']['loss'] / st['acc']['n']:.4f}"
                )
            if self.on_step is not None:
                self.on_step(st["global_step"])
            if (
                cfg.ckpt_every
                and st["global_step"] % cfg.ckpt_every == 0
                and st["step_in_epoch"] < n_this
            ):
                now = time.perf_counter()
                st["train_time_s"] += now - t0
                t0 = now
                self._save_last()
        now = time.perf_counter()
        st["train_time_s"] += now - t0
        self._end_epoch(epoch, t_epoch)

    def _end_epoch(self, epoch: int, t_epoch: float) -> None:
        cfg, st = self.cfg, self.state
        last = st["global_step"] >= self.total_steps
        acc = st["acc"]
        n = max(1, acc["n"])
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": st["global_step"],
            "loss": ddp.mean_over_ranks(acc["loss"] / n, self.dist, self.device),
        }
        if acc["seg"] or self.cfg.stage != "1":
            row["loss_seg"] = ddp.mean_over_ranks(acc["seg"] / n, self.dist, self.device)
        if self.native and cfg.stage != "2":
            row["loss_score"] = ddp.mean_over_ranks(acc["score"] / n, self.dist, self.device)
        for stage, gamma in enumerate(injection_gammas(self.model), start=1):
            row[f"gamma_{stage}"] = float(gamma.detach())
        groups = self.optimizer.param_groups
        row["lr"] = groups[0]["lr"]
        for name, group in zip(self.group_names[1:], groups[1:]):
            row[f"lr_{name}"] = group["lr"]
        t_val = time.perf_counter()
        if (epoch + 1) % cfg.val_every == 0 or last:
            val = self._validate()
            for k in ("IoU", "nIoU", "Pd", "Fa", "FA_per_image", "coverage", "precision"):
                if k in val:
                    row[f"val_{k}"] = val[k]
            if "score_loss" in val:
                row["val_score_loss"] = val["score_loss"]
            key = selection_key(cfg.stage, val)
            if st["best_key"] is None or key > tuple(st["best_key"]):
                st["best_key"], st["best_epoch"], st["best_val"] = list(key), epoch + 1, val
                self._save_best(epoch + 1, val)
        st["train_time_s"] += time.perf_counter() - t_val
        row["time_s"] = time.perf_counter() - t_epoch
        self.bar_close()
        st["log_rows"].append(row)
        self.say(_epoch_line(row, self.n_epochs))
        if self.dist.is_main:
            write_text(self.folder / "log.csv", pd.DataFrame(st["log_rows"]).to_csv(index=False))
        st["epoch"] += 1
        st["step_in_epoch"] = 0
        st["acc"] = {"loss": 0.0, "seg": 0.0, "score": 0.0, "n": 0}
        self._save_last()

    def bar_close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _save_best(self, epoch: int, val: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        ckpt = model_checkpoint(
            self.model,
            self.cfg.model,
            self.cfg.size,
            self.cfg.build_overrides(),
            run_id=self.folder.name,
            config=self.cfg.to_dict(),
            epoch=epoch,
            metrics={"val": val},
        )
        save_torch(ckpt, self.folder / "best.pt")

    def _finish(self) -> None:
        cfg, st = self.cfg, self.state
        if self.dist.is_main:
            metrics = {
                "complete": True,
                "run_id": self.folder.name,
                "stage": cfg.stage,
                "selected_by": "val coverage, then val score loss"
                if cfg.stage == "1"
                else "val IoU, then val nIoU",
                "best_epoch": st["best_epoch"],
                "val": st["best_val"],
                "final_val": next(
                    (
                        {k[4:]: v for k, v in r.items() if k.startswith("val_")}
                        for r in reversed(st["log_rows"])
                        if any(k.startswith("val_") for k in r)
                    ),
                    None,
                ),
                "epochs": st["epoch"],
                "steps": st["global_step"],
                "train_time_s": st["train_time_s"],
                "world_size": self.dist.world_size,
                "device": str(self.device),
                "dataset": dataset_identity(self.index),
            }
            write_json(self.folder / "metrics.json", metrics)
        ddp.barrier(self.dist)
