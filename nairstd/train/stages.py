"""The rules of each training stage (SPEC §3), one small policy object per stage.

Stage "1" (`Stage1Policy`): native branch + scorer only (`score_patches`), L_score on soft or hard
    patch labels, Adam at lr_stage1; kept: the best validation Top-K coverage (ties: score loss).
Stage "2" (`Stage2Policy`): the full model initialised from a Stage-1 checkpoint; scorer frozen;
    L_seg; two parameter groups, main (backbone, decoders, injection) at lr_main and native branch
    at lr_native; a fresh cosine schedule. Kept: best validation IoU.
Stage "one" (`OneStagePolicy`): everything from scratch, L_seg + score_weight * L_score (scorer
    trainable) for native-branch models, L_seg alone (or the paper's own loss, `model.loss`) for
    any other model returning logits (the baselines).

The trainer (`nairstd.train.loop`) asks `policy_for(config)` for what differs between stages:
the model it starts from, the module the forward goes through, the parameter groups, the loss,
the losses logged per epoch and the validation score a checkpoint is selected by.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nairstd.data.index import DatasetIndex
from nairstd.losses import false_alarm_loss, seg_loss
from nairstd.models.traits import has_native_branch, unwrap
from nairstd.profiles import PROFILES
from nairstd.protocols import RESIZE256
from nairstd.train.checkpoint import build_from_checkpoint, read_checkpoint
from nairstd.train.config import TrainConfig, profile_config
from nairstd.train.evaluate import patch_labels
from nairstd.train.runs import is_complete, run_dir

Losses = tuple[torch.Tensor, dict[str, float]]


class Stage1Missing(RuntimeError):
    """Stage 2 was asked for without a Stage-1 run to start from."""


# --------------------------------------------------------------------------------------------------
# The policies
# --------------------------------------------------------------------------------------------------
class StagePolicy:
    """The rules shared by the stages that train segmentation ("2" and "one")."""

    stage = ""  # TrainConfig.stage of the policy
    needs_native = False  # the stage trains a native branch + scorer (na_irstd, dense_cnn)
    scores_only = False  # validation measures the scorer's Top-K coverage only
    frozen_scorer = False  # the scorer keeps its (Stage-1) weights
    gamma_group = True  # with lr_gamma set, the injection scales gamma_l get their own group
    selected_by = "val IoU, then val nIoU"

    def __init__(self, config: TrainConfig) -> None:
        self.cfg = config

    def build(self) -> nn.Module:
        """The model the stage starts from (seeded by the caller): fresh, or the weights of
        `init_from` (a one-stage run may start from a checkpoint: fine-tuning)."""
        from nairstd.zoo import build_model

        cfg = self.cfg
        if cfg.init_from is not None:
            return _build_from_init(cfg)
        return build_model(cfg.model, cfg.size, **cfg.build_overrides())

    def forward_module(self, model: nn.Module) -> nn.Module:
        """The module a training step calls (and DistributedDataParallel wraps)."""
        return model

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Optimiser groups; parameters outside them get requires_grad False."""
        cfg, native = self.cfg, has_native_branch(model)
        if self.needs_native and not native:
            raise ValueError(
                f"stage {cfg.stage} needs a model with a native branch and scorer (na_irstd, "
                f"dense_cnn); {cfg.model!r} has none: train it with --stage one"
            )
        for p in model.parameters():
            p.requires_grad_(True)
        if native:
            model.freeze_scorer(self.frozen_scorer)
        groups = self._groups(model)
        gammas = injection_gammas(model) if self.gamma_group else []
        if cfg.lr_gamma is not None and gammas:
            # gamma_l gets its own rate: with Adam a step moves a parameter by about its lr, so
            # at lr_main the injection stays near its init for a short run (README, "Injection
            # gamma").
            ids = {id(p) for p in gammas}
            for group in groups:
                group["params"] = [p for p in group["params"] if id(p) not in ids]
            groups.append({"params": gammas, "lr": cfg.lr_gamma, "name": "gamma"})
        return groups

    def _groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return [{"params": list(model.parameters()), "lr": self.cfg.lr_main, "name": "all"}]

    def losses(self, fwd: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Losses:
        """(loss to minimise, its parts as floats) of one batch."""
        cfg = self.cfg
        own_loss = getattr(model, "loss", None)
        if cfg.loss == "paper" and callable(own_loss) and not has_native_branch(model):
            # A baseline trained with its paper's loss (deep supervision, edge or reconstruction
            # terms need the auxiliary outputs).
            seg = own_loss(fwd(x, return_aux=True), y)
        else:
            logits = fwd(x)
            seg = seg_loss(logits, y, empty_dice=not cfg.fa_weight) + self.fa_term(logits, y)
        return seg, {"seg": float(seg.detach())}

    def fa_term(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor | float:
        """fa_weight x the false-alarm loss on the batch's target-free samples (0 when off)."""
        if not self.cfg.fa_weight:
            return 0.0
        return self.cfg.fa_weight * false_alarm_loss(logits, y)

    def logged_losses(self, acc: dict[str, float], native: bool) -> list[str]:
        """The loss parts written to each epoch's log row (`loss_<part>`)."""
        return ["seg"]

    def selection_key(self, val: dict[str, Any]) -> tuple[float, float]:
        """Larger is better: (IoU, nIoU)."""
        return (_num(val.get("IoU")), _num(val.get("nIoU")))


class Stage1Policy(StagePolicy):
    """Native branch + scorer with L_score; selected by Top-K coverage."""

    stage = "1"
    needs_native = True
    scores_only = True
    gamma_group = False  # Stage 1 trains no injection
    selected_by = "val coverage, then val score loss"

    def forward_module(self, model: nn.Module) -> nn.Module:
        return _ScoreAdapter(model)

    def _groups(self, model: nn.Module) -> list[dict[str, Any]]:
        trainable = [*model.native_parameters(), *model.scorer_parameters()]
        ids = {id(p) for p in trainable}
        for p in model.parameters():
            if id(p) not in ids:
                p.requires_grad_(False)
        return [{"params": trainable, "lr": self.cfg.lr_stage1, "name": "native+scorer"}]

    def losses(self, fwd: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Losses:
        from nairstd.models.scoring import score_loss

        cfg = self.cfg
        patch_logits, _ = fwd(x)
        labels = patch_labels(y, model, cfg.label, cfg.sigma)
        loss = score_loss(patch_logits.float(), labels)
        return loss, {"score": float(loss.detach())}

    def logged_losses(self, acc: dict[str, float], native: bool) -> list[str]:
        return (["seg"] if acc["seg"] else []) + ["score"]

    def selection_key(self, val: dict[str, Any]) -> tuple[float, float]:
        """Larger is better: (coverage, -score loss)."""
        return (_num(val.get("coverage")), -_num(val.get("score_loss"), math.inf))


class Stage2Policy(StagePolicy):
    """The full model from a Stage-1 checkpoint, scorer frozen, L_seg; selected by IoU."""

    stage = "2"
    needs_native = True
    frozen_scorer = True

    def build(self) -> nn.Module:
        if self.cfg.init_from is None:
            raise Stage1Missing("Stage 2 needs init_from")
        return _build_from_init(self.cfg)

    def _groups(self, model: nn.Module) -> list[dict[str, Any]]:
        cfg = self.cfg
        return [
            {"params": list(model.main_parameters()), "lr": cfg.lr_main, "name": "main"},
            {"params": list(model.native_parameters()), "lr": cfg.lr_native, "name": "native"},
        ]


class OneStagePolicy(StagePolicy):
    """Everything from scratch: L_seg (+ score_weight x L_score with a native branch)."""

    stage = "one"

    def losses(self, fwd: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Losses:
        if not has_native_branch(model):
            return super().losses(fwd, model, x, y)
        from nairstd.models.scoring import score_loss

        cfg = self.cfg
        out = fwd(x, return_extras=True)
        seg = seg_loss(out["logits"], y, empty_dice=not cfg.fa_weight)
        seg = seg + self.fa_term(out["logits"], y)
        labels = patch_labels(y, model, cfg.label, cfg.sigma)
        sc = score_loss(out["patch_logits"].float(), labels)
        loss = seg + cfg.score_weight * sc
        return loss, {"seg": float(seg.detach()), "score": float(sc.detach())}

    def logged_losses(self, acc: dict[str, float], native: bool) -> list[str]:
        return ["seg", "score"] if native else ["seg"]


POLICIES: dict[str, type[StagePolicy]] = {
    cls.stage: cls for cls in (Stage1Policy, Stage2Policy, OneStagePolicy)
}


def policy_for(config: TrainConfig) -> StagePolicy:
    """The policy of `config.stage`."""
    return POLICIES[config.stage](config)


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """Optimiser groups of a stage; parameters outside them get requires_grad False.

    "1": native + scorer at lr_stage1. "2": main at lr_main, native at lr_native (scorer frozen).
    "one": every parameter at lr_main. "2" and "one": gamma_l in its own group when lr_gamma is set.
    """
    return policy_for(config).param_groups(model)


def check_options_apply(config: TrainConfig, given: set[str]) -> None:
    """ValueError for an option the user set (`given`: TrainConfig field names) that this run
    could not use, instead of training a run that silently ignores it (and whose id and cached
    results would still carry it): `lr_gamma` for a stage or a model without injection scales
    gamma_l (Stage 1 trains no injection; the detector and the baselines have none), and
    `image_size` under the native protocol (frames keep their own size there)."""
    if "lr_gamma" in given and config.lr_gamma is not None:
        if not policy_for(config).gamma_group:
            raise ValueError(
                f"--lr-gamma cannot apply to Stage {config.stage}: it trains no injection "
                "scales gamma_l (they train in Stage 2 and one-stage runs)"
            )
        from nairstd.zoo import build_model

        if not injection_gammas(build_model(config.model, config.size, **config.build_overrides())):
            raise ValueError(
                f"--lr-gamma cannot apply to model {config.model!r}: it has no injection scales "
                "gamma_l (only models with a native branch injected into the detector do)"
            )
    if "image_size" in given and config.protocol != RESIZE256:
        raise ValueError(
            f"--image-size cannot apply under --protocol {config.protocol}: it is the side "
            f"images are resized to under {RESIZE256}; native frames keep their own size "
            "(--crop sets the training crop)"
        )


def injection_gammas(model: nn.Module) -> list[nn.Parameter]:
    """The injection scales gamma_l (Eq. 16), stage order; empty for models without injection."""
    injection = getattr(unwrap(model), "injection", None)
    if injection is None:
        return []
    return [block.gamma for block in injection.blocks]


class _ScoreAdapter(nn.Module):
    """Makes `score_patches` the forward, so DistributedDataParallel syncs Stage-1 gradients."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.module = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.module.score_patches(x)


def _build_from_init(cfg: TrainConfig) -> nn.Module:
    """The model of `cfg` with the weights of its `init_from` checkpoint (errors name the file)."""
    init = read_checkpoint(cfg.init_from)
    if init["model"] != cfg.model:
        raise ValueError(
            f"{init['path']}: a {init['model']!r} checkpoint cannot start a {cfg.model!r} "
            f"stage {cfg.stage} run"
        )
    init = {**init, "size": cfg.size, "overrides": cfg.build_overrides()}
    try:
        return build_from_checkpoint(init)
    except RuntimeError as err:
        raise ValueError(
            f"{init['path']}: weights do not fit {cfg.model} size {cfg.size} ({err})"
        ) from err


def _num(x: Any, default: float = -math.inf) -> float:
    return default if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


# --------------------------------------------------------------------------------------------------
# Where a Stage 2 starts: its Stage-1 run
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
        clutter_p=config.clutter_p,
        clutter_mined=config.clutter_mined,
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


def resolve_init(
    config: TrainConfig, index: DatasetIndex, runs_dir: str | Path | None = None
) -> tuple[TrainConfig, TrainConfig | None]:
    """(config with a Stage 2's `init_from` resolved, the Stage-1 config still to train or None).

    A Stage 2 without init_from starts from the best.pt of the matching Stage-1 run of the cache
    (which is returned when not finished yet); one given an explicit init takes its absolute path
    and the label type of that Stage-1 run. A one-stage run's init_from (fine-tuning) becomes
    absolute; other configs pass through."""
    if config.stage != "2":
        if config.init_from is not None:
            config = config.replace(init_from=str(Path(config.init_from).resolve()))
        return config, None
    if config.init_from is None:
        s1 = stage1_config_for(config)
        s1_dir = run_dir(s1, index, runs_dir)
        pending = None if is_complete(s1_dir) else s1
        return config.replace(init_from=str(s1_dir / "best.pt")), pending
    return _with_init_label(config.replace(init_from=str(Path(config.init_from).resolve()))), None


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
