"""The trainer (SPEC §3): one model-agnostic loop for the three stages and the baselines.

    from nairstd.train import profile_config, train
    result = train(profile_config("quick", "1", dataset="SIRST", label="soft"))
    result = train(profile_config("quick", "2", dataset="SIRST"))   # finds the Stage-1 run

Each stage's rules (starting model, parameter groups, loss, selection) are a policy object of
`nairstd.train.stages`; this module is the loop they share. Schedules are per-step cosine from
each group's lr down to min_lr_ratio x lr.

Runs live in the cache (`nairstd.train.runs`): a finished run is returned at once; an interrupted
one resumes from last.pt (written every `ckpt_every` steps and after each epoch) exactly where it
stopped: the sample order and augmentations are functions of (seed, epoch), and the RNG states,
the optimiser, the scheduler and the epoch's running sums travel in the checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from nairstd.data.index import DatasetIndex, find_dataset
from nairstd.io import write_json, write_text
from nairstd.malloc import tune_malloc
from nairstd.models.traits import has_native_branch, unwrap
from nairstd.train import ddp
from nairstd.train.checkpoint import (
    read_resume_state,
    resolve_device,
    rng_state,
    save_run_checkpoint,
    seed_everything,
    set_rng_state,
)
from nairstd.train.config import TrainConfig, check_model_fit, cpu_threads
from nairstd.train.evaluate import evaluate_loader, make_loader
from nairstd.train.progress import Logger, Progress, epoch_line
from nairstd.train.recipes import lr_factor, make_optimizer, recipe_for
from nairstd.train.runs import (
    RunResult,
    dataset_identity,
    is_complete,
    load_result,
    run_dir,
    run_lock,
    write_run_config,
)
from nairstd.train.sampling import TrainBatches
from nairstd.train.stages import (
    Stage1Missing,
    injection_gammas,
    policy_for,
    resolve_init,
    stage1_command,
    stage1_config_for,
)

__all__ = ["Stage1Missing", "planned_run_dir", "stage1_config_for", "train"]


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
    config, stage1 = resolve_init(config, index, runs_dir)
    if stage1 is not None:  # a Stage 2 whose Stage-1 run is not finished
        s1_name = Path(config.init_from).parent.name
        if not auto_stage1:
            raise Stage1Missing(
                f"no finished Stage-1 run for this Stage 2 ({s1_name}); run first:\n  "
                + stage1_command(config)
            )
        if ddp.env_world()[1] == 0:
            say(f"Stage 2 needs Stage 1 {s1_name}: training it first")
        train(stage1, runs_dir, data_root, progress, log=log, on_step=on_step)
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
    config, stage1 = resolve_init(config, index, runs_dir)
    return None if stage1 is not None else run_dir(config, index, runs_dir)


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
        self.progress = progress
        self.say_raw = say
        self.on_step = on_step
        self.policy = policy_for(config)

    # -- setup -----------------------------------------------------------------------------------
    def run(self) -> RunResult:
        cfg = self.cfg
        self.dist, self.device = ddp.setup(resolve_device(cfg.device))
        if self.device.type == "cpu":
            tune_malloc()  # 32 MiB activations: keep freed blocks (nairstd.malloc; no maths)
        self.out = Progress(self.say_raw, self.progress, self.dist.is_main)
        self.say = self.out.say
        with cpu_threads(cfg.threads):
            return self._run()

    def _build(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)
        model = self.policy.build()
        self.model = model.to(self.device)
        self.native = has_native_branch(model)
        groups = self.policy.param_groups(model)
        self.group_names = [g.pop("name") for g in groups]
        # The authors' optimiser for a baseline under optim="official" (nairstd.train.recipes),
        # else Adam over the policy's groups.
        self.recipe = recipe_for(cfg.model, cfg.optim)
        self.optimizer = make_optimizer(self.recipe, groups, cfg.weight_decay)
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)

        fwd = self.policy.forward_module(model)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            fwd = DistributedDataParallel(fwd, device_ids=ids)
        self.fwd = fwd

        # Data: the sample order per epoch is a function of (seed, epoch) via the sampler.
        self.data = TrainBatches(cfg, self.index, self.dist.world_size, self.dist.rank)
        self.steps_per_epoch = self.data.steps_per_epoch
        self.total_steps = self.data.total_steps
        self.n_epochs = self.data.n_epochs
        ratios = lr_factor(self.recipe, self.total_steps, self.steps_per_epoch, cfg.min_lr_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, ratios)
        val_bs = max(1, cfg.batch_size)
        self.val_loader = make_loader(
            self.index, "val", cfg.protocol, cfg.image_size, val_bs, cfg.val_limit, 0
        )

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

    def _save(self, name: str, epoch: int, **extra: Any) -> None:
        """Write best.pt or last.pt (rank 0 only)."""
        if self.dist.is_main:
            save_run_checkpoint(
                self.folder / name, self.model, self.cfg, self.folder.name, epoch, **extra
            )

    def _save_last(self) -> None:
        if not self.dist.is_main:  # rng_state() and the optimiser state: rank 0 only
            return
        self._save(
            "last.pt",
            self.state["epoch"],
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            state=self.state,
            rng=rng_state(),
            world_size=self.dist.world_size,
        )

    def _load_last(self) -> bool:
        ckpt = read_resume_state(self.folder / "last.pt", self.dist.world_size)
        if ckpt is None:
            return False
        unwrap(self.model).load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = ckpt["state"]
        set_rng_state(ckpt["rng"])
        return True

    # -- one step ----------------------------------------------------------------------------------
    def _step(self, batch: dict[str, Any]) -> None:
        x = batch["image"].to(self.device, non_blocking=True)
        y = batch["mask"].to(self.device, non_blocking=True)
        with torch.autocast(
            device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp
        ):
            loss, parts = self.policy.losses(self.fwd, self.model, x, y)
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
            scores_only=self.policy.scores_only,
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
        if self.dist.is_main:
            write_run_config(self.folder, self.cfg, self.index)
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
        batches = self.data.epoch(epoch)
        n_this = min(len(batches), self.total_steps - epoch * self.steps_per_epoch)
        loader = self.data.loader(batches[st["step_in_epoch"] : n_this])
        self.out.open(n_this, st["step_in_epoch"], f"epoch {epoch + 1}/{self.n_epochs}")
        t0 = t_epoch = time.perf_counter()
        for batch in loader:
            self._step(batch)
            st["step_in_epoch"] += 1
            st["global_step"] += 1
            self.out.step(st["acc"]["loss"] / st["acc"]["n"])
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
        for part in self.policy.logged_losses(acc, self.native):
            row[f"loss_{part}"] = ddp.mean_over_ranks(acc[part] / n, self.dist, self.device)
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
            key = self.policy.selection_key(val)
            if st["best_key"] is None or key > tuple(st["best_key"]):
                st["best_key"], st["best_epoch"], st["best_val"] = list(key), epoch + 1, val
                self._save("best.pt", epoch + 1, metrics={"val": val})
        st["train_time_s"] += time.perf_counter() - t_val
        row["time_s"] = time.perf_counter() - t_epoch
        self.out.close()
        st["log_rows"].append(row)
        self.say(epoch_line(row, self.n_epochs))
        if self.dist.is_main:
            write_text(self.folder / "log.csv", pd.DataFrame(st["log_rows"]).to_csv(index=False))
        st["epoch"] += 1
        st["step_in_epoch"] = 0
        st["acc"] = {"loss": 0.0, "seg": 0.0, "score": 0.0, "n": 0}
        self._save_last()

    def _finish(self) -> None:
        cfg, st = self.cfg, self.state
        if self.dist.is_main:
            metrics = {
                "complete": True,
                "run_id": self.folder.name,
                "stage": cfg.stage,
                "selected_by": self.policy.selected_by,
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
