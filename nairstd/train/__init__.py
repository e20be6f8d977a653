"""Training and evaluation (SPEC §3, §4, §6); detection lives in `nairstd.predict`.

from nairstd.train import profile_config, train, evaluate_checkpoint
run = train(profile_config("quick", "1", dataset="SIRST", label="soft"))   # Stage 1
run = train(profile_config("quick", "2", dataset="SIRST"))                 # Stage 2
evaluate_checkpoint(run.run_dir, "SIRST", split="test", protocol="resize256")
"""

from nairstd.losses import dice_loss, seg_loss
from nairstd.train.checkpoint import load_model, read_checkpoint
from nairstd.train.config import TrainConfig, profile_config, profile_settings
from nairstd.train.evaluate import evaluate_checkpoint, evaluate_model, topk_coverage_curve
from nairstd.train.loop import Stage1Missing, stage1_config_for, train
from nairstd.train.runs import RunResult, is_complete, list_runs, load_result, run_dir, runs_root

__all__ = [
    "RunResult",
    "Stage1Missing",
    "TrainConfig",
    "dice_loss",
    "evaluate_checkpoint",
    "evaluate_model",
    "is_complete",
    "list_runs",
    "load_model",
    "load_result",
    "profile_config",
    "profile_settings",
    "read_checkpoint",
    "run_dir",
    "runs_root",
    "seg_loss",
    "stage1_config_for",
    "topk_coverage_curve",
    "train",
]
