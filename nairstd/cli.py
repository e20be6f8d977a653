"""Command line: `python -m nairstd VERB ...` (also installed as `nairstd`).

Verbs: data stats | data synth | data hard | score | bench | train | eval | predict | calibrate |
export | ood | import-weights | reference run | reference status | reference throughput |
profiles.
Every bad input (a missing or unreadable file, a bad option value, an unusable checkpoint or
output folder) prints one line `error: ...` and exits with status 2: option values are checked by
argparse types, and everything else is turned into that line in one place, `main`. What each
verb does is in `nairstd.commands`.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from nairstd import commands
from nairstd.compiling import COMPILE_CHOICES, COMPILE_HELP
from nairstd.data.images import DataError
from nairstd.isolation import REJECT_CHOICES
from nairstd.onnx_backend import BACKENDS
from nairstd.profiles import DEFAULT_PROFILE, PROFILES
from nairstd.protocols import NATIVE, PROTOCOLS, RESIZE256


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors as the one `error: ...` line (status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


REJECT_HELP = (
    "drop detections that are the bright end of a larger structure (lamp heads on their poles, "
    "roof corners, roof-top plant: nairstd.isolation): on, off, or auto (default: what the "
    "checkpoint records, e.g. one written by calibrate --reject-structures on; else off)"
)


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} must be >= {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive = _int_at_least(1)
non_negative = _int_at_least(0)


def frame_size(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' (e.g. 640x512, as `bench predict --sizes`) -> (height, width)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 640x512") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be >= 1")
    return h, w


frame_size.__name__ = "WIDTHxHEIGHT"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m nairstd",
        description="Na-IRSTD reproduction: data, training, evaluation, detection, benchmarks.",
    )
    parser.add_argument(
        "--data-root", help="extra dataset folder(s), os.pathsep-separated (also NAIRSTD_DATA)"
    )
    verbs = parser.add_subparsers(dest="verb", required=True)

    data = verbs.add_parser("data", help="dataset tools").add_subparsers(
        dest="data_verb", required=True
    )
    stats = data.add_parser("stats", help="images, targets, splits, sizes, warnings per dataset")
    stats.add_argument("path", nargs="*", help="dataset folder(s) or name(s); default: all found")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=commands.data_stats)

    synth = data.add_parser("synth", help="generate the synthetic datasets (deterministic)")
    synth.add_argument("name", nargs="*", help="preset name(s); default: all presets")
    synth.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES)
    synth.add_argument("--out", help="output folder (default: the project's data/)")
    synth.set_defaults(func=commands.data_synth)

    clutter = data.add_parser(
        "clutter",
        help="write the clutter sets of the OOD check (urban / road frames, 3 sizes, 8/16-bit)",
        description="Write synthetic-clutter (target-free) and synthetic-clutter-targets as "
        "toolbox-layout folders (every frame in the test split): the frames `ood` scores. They "
        "go to data/ood/ (not data/, so they never join the training sets or IRSTD-Hard).",
    )
    clutter.add_argument("name", nargs="*", help="set name(s); default: both")
    clutter.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES,
                         help="frames as many as this profile's OOD check scores")  # fmt: skip
    clutter.add_argument("--frames", type=int, help="frames per set (overrides the profile)")
    clutter.add_argument("--out", help="output folder (default: the project's data/ood/)")
    clutter.set_defaults(func=commands.data_clutter)

    hard = data.add_parser("hard", help="build IRSTD-Hard from the test splits of datasets")
    hard.add_argument("sources", nargs="+", help="dataset folders or names")
    hard.add_argument("--out", help="output folder (default: the project's data/)")
    hard.set_defaults(func=commands.data_hard)

    score = verbs.add_parser("score", help="score a folder of predicted PNGs against a dataset")
    score.add_argument("--pred", required=True, help="folder of PNGs: same stem, probability x 255")
    score.add_argument("--data", required=True, help="dataset folder or name")
    group = score.add_mutually_exclusive_group()
    group.add_argument("--split", default="test", help="train, val, test or all (default test)")
    group.add_argument("--list", help="file listing the image stems to score")
    score.add_argument("--protocol", default=NATIVE, choices=PROTOCOLS)
    score.add_argument("--json", action="store_true", help="print JSON")
    score.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="probability above which a pixel is a detection (default 0.5)",
    )
    score.add_argument(
        "--sweep",
        metavar="CSV",
        help="score every threshold 0.05..0.95: Pd, Fa and false targets per frame to CSV, and "
        "the Pd-false alarm figure beside it (same name, .png)",
    )
    score.set_defaults(func=commands.score)

    bench = verbs.add_parser("bench", help="benchmarks (python -m nairstd bench model --help)")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(func=commands.bench)

    train = verbs.add_parser(
        "train",
        help="train a model (Stage 1, Stage 2 or one-stage); reuses or resumes cached runs",
        description="Train into the run cache (<outputs>/runs/<run-id>/). A finished run is "
        "reused, an interrupted one resumes. Multi-GPU: torchrun --nproc_per_node N -m nairstd "
        "train ...",
    )
    train.add_argument(
        "--stage",
        required=True,
        choices=["1", "2", "one"],
        help="1: native branch + scorer (L_score); 2: full model from Stage 1, scorer frozen; "
        "one: everything from scratch (use it for the baselines and the detector)",
    )
    train.add_argument("--model", default="na_irstd", help="model name (default na_irstd)")
    train.add_argument("--dataset", default="SIRST", help="dataset name or folder")
    train.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES)
    train.add_argument("--label", choices=["soft", "hard"], help="patch labels (default soft)")
    train.add_argument("--size", choices=["tiny", "base"], help="model size (profile default)")
    train.add_argument(
        "--init",
        help="Stage 2: Stage-1 run folder or checkpoint (default: the "
        "matching Stage-1 run of the cache, trained first when missing)",
    )
    train.add_argument(
        "--no-auto-stage1",
        action="store_true",
        help="Stage 2: stop (and say what to run) when the Stage-1 run is missing",
    )
    train.add_argument("--epochs", type=positive, help="epochs (profile default)")
    train.add_argument("--batch-size", type=positive, help="global batch size (profile default)")
    train.add_argument("--crop", type=non_negative, help="training crop size; 0 = whole images")
    train.add_argument("--protocol", choices=PROTOCOLS, help=f"default {RESIZE256}")
    train.add_argument(
        "--image-size", type=positive, help="side of the resized images (default 256)"
    )
    train.add_argument("--max-steps", type=positive, help="cap on optimiser steps")
    train.add_argument("--top-k", type=positive, help="K selected patches (model default 5)")
    train.add_argument("--seed", type=int, help="seed (default 0)")
    train.add_argument(
        "--loss",
        choices=["paper", "bce_dice"],
        help="paper (default): each method's own loss (baselines: their papers' losses); "
        "bce_dice: BCE + Dice for every model",
    )
    train.add_argument(
        "--optim",
        choices=["official", "common"],
        help="official (default): a baseline trains with its authors' optimiser and schedule "
        "(nairstd/train/recipes.py); common: Adam + cosine, as our models",
    )
    train.add_argument(
        "--lr-gamma",
        type=float,
        help="learning rate of the injection scales gamma_l (default: the profile's)",
    )
    train.add_argument(
        "--model-args", help="extra model config as JSON, e.g. '{\"patch_size\": 16}'"
    )
    train.add_argument(
        "--scale",
        nargs=2,
        type=float,
        metavar=("MIN", "MAX"),
        help="scale augmentation: rescale each training image by a log-uniform factor in "
        "MIN..MAX before the crop (default 1 1: off)",
    )
    train.add_argument(
        "--background-p",
        type=float,
        help="probability of a target-free sample: the frame with its targets inpainted out "
        "(default 0)",
    )
    train.add_argument(
        "--clutter-p",
        type=float,
        help="probability of a sample from a generated clutter frame (urban / road scenes at "
        "640x512-1920x1080 with 0-4 targets, a seed apart from the OOD check's sets), its crop "
        "often on the frame's brightest structure ends (default 0)",
    )
    train.add_argument(
        "--fa-weight",
        type=float,
        help="weight of the false-alarm loss on target-free samples (default 0)",
    )
    train.add_argument(
        "--frame-stats",
        action="store_true",
        help="standardise each training crop by its whole (rescaled) frame's mean and std, as "
        "predict standardises a frame (default: by the crop's own)",
    )
    train.add_argument(
        "--target-crop-p",
        type=float,
        help="probability a training crop is placed on a target (default 0.5)",
    )
    train.add_argument("--device", help="auto (default), cpu, cuda, cuda:1")
    train.add_argument("--workers", type=non_negative, help="data loader workers")
    train.add_argument("--no-amp", action="store_true", help="disable mixed precision")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument("--out", help="runs folder (default <outputs>/runs)")
    train.add_argument("--json", action="store_true", help="print the run's metrics as JSON")
    train.set_defaults(func=commands.train)

    ev = verbs.add_parser("eval", help="evaluate a checkpoint: IoU, nIoU, Pd, Fa, Top-K coverage")
    ev.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint file, run folder, or a classical method (tophat, mpcm, pstnn, nram)",
    )
    ev.add_argument("--dataset", required=True, help="dataset name or folder")
    ev.add_argument("--split", default="test", help="train, val, test or all (default test)")
    ev.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        help="default: the protocol the checkpoint was trained for (nairstd.operating, as "
        f"predict uses it); {RESIZE256} when it does not say, and for classical methods",
    )
    ev.add_argument(
        "--threshold",
        type=float,
        help="probability above which a pixel is target (default: the checkpoint's operating "
        "threshold, e.g. one set by calibrate, as predict uses it; else 0.5)",
    )
    ev.add_argument("--batch-size", type=positive, default=8, help="batch size under resize256")
    ev.add_argument("--limit", type=positive, help="first N images only")
    ev.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    ev.add_argument("--json", action="store_true", help="print JSON")
    ev.add_argument("--compile", default="auto", choices=COMPILE_CHOICES, help=COMPILE_HELP)
    ev.add_argument("--reject-structures", default="auto", choices=REJECT_CHOICES, help=REJECT_HELP)
    ev.set_defaults(func=commands.evaluate)

    pred = verbs.add_parser(
        "predict",
        help="detect targets in your images: probability PNGs + detections.csv",
        description="For every input image a PNG (same stem and size) holding probability x 255, "
        "and detections.csv (image, target_id, x, y, area, peak_probability). Exit status 1 when "
        "an input could not be processed (it is named and skipped).",
    )
    pred.add_argument(
        "--checkpoint",
        help="checkpoint file, run folder, exported .onnx file (python -m nairstd export), or a "
        "classical method (tophat, mpcm, pstnn, nram); default: the shipped na_irstd "
        "(nairstd/pretrained/MODEL_CARD.md)",
    )
    pred.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="torch, or onnxruntime (an .onnx file, or a checkpoint exported in memory first); "
        "auto (default): onnxruntime for an .onnx file, else torch",
    )
    pred.add_argument("--input", required=True, nargs="+", help="image files and/or folders")
    pred.add_argument("--output", required=True, help="output folder")
    pred.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        help="default: the protocol the checkpoint was trained for (native when it does not say)",
    )
    pred.add_argument(
        "--threshold",
        type=float,
        help="probability above which a pixel is a detection (detections.csv); default: the "
        "checkpoint's operating threshold (the model card), else 0.5",
    )
    pred.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    pred.add_argument(
        "--tile",
        type=non_negative,
        help="native protocol: run images larger than this many px a side in overlapping "
        "windows of this size, to bound memory (default 1024, nairstd.predict.TILE; "
        "0: never)",
    )
    pred.add_argument("--compile", default="auto", choices=COMPILE_CHOICES, help=COMPILE_HELP)
    pred.add_argument(
        "--reject-structures", default="auto", choices=REJECT_CHOICES, help=REJECT_HELP
    )
    pred.set_defaults(func=commands.predict)

    cal = verbs.add_parser(
        "calibrate",
        help="set a checkpoint's threshold on your own target-free frames (false-alarm budget)",
        description="Run the model once over frames from your sensor that hold no target, count "
        "the detections predict would report at every threshold 0.05..0.99, and write a copy of "
        "the checkpoint whose threshold is the lowest one keeping the false targets per frame "
        "within the budget, with the evidence (nairstd.calibrate). predict --checkpoint OUT "
        "then uses it. Nothing is written when no threshold meets the budget.",
    )
    cal.add_argument(
        "--checkpoint",
        help="checkpoint file or run folder (default: the shipped na_irstd, as predict)",
    )
    cal.add_argument(
        "--background",
        required=True,
        nargs="+",
        help="target-free frames: image files and/or folders (any image predict reads)",
    )
    cal.add_argument(
        "--max-false-per-frame",
        type=float,
        default=0.2,
        help="budget: false targets per target-free frame (default 0.2)",
    )
    cal.add_argument("--out", required=True, help="the calibrated checkpoint to write")
    cal.add_argument("--protocol", choices=PROTOCOLS, help="default: the checkpoint's")
    cal.add_argument(
        "--tile",
        type=non_negative,
        help="as predict --tile (default 1024; predict with the same value)",
    )
    cal.add_argument(
        "--holdout",
        type=float,
        help="fraction of the frames held out (seeded) to check the chosen threshold on "
        "(default 0: none; with --finetune 0.25, and it must be > 0)",
    )
    cal.add_argument(
        "--seed", type=int, default=0, help="seed of the held-out draw and fine-tune (default 0)"
    )
    cal.add_argument(
        "--finetune",
        action="store_true",
        help="first fine-tune the model on crops around its false targets in the frames (held-out "
        "frames excepted), with targets of --replay replayed so Pd holds; then calibrate it and "
        "report held-out false targets and replay val Pd before / after (nairstd.finetune)",
    )
    cal.add_argument(
        "--finetune-steps",
        type=positive,
        help="optimiser steps of the fine-tune (default 200; needs --finetune)",
    )
    cal.add_argument(
        "--replay",
        help="labelled dataset (name or folder) whose train split is replayed and whose val "
        "split checks Pd (default SIRST; needs --finetune)",
    )
    cal.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    cal.add_argument(
        "--reject-structures",
        default="auto",
        choices=REJECT_CHOICES,
        help="count the detections as predict reports them with this isolation test "
        "(nairstd.isolation; on, off, auto: as the checkpoint records) and record it in the "
        "copy, so predict applies the same; not with --finetune",
    )
    cal.add_argument("--json", action="store_true", help="print the recorded evidence as JSON")
    cal.set_defaults(func=commands.calibrate)
    exp = verbs.add_parser(
        "export",
        help="export a checkpoint to ONNX (predict --checkpoint model.onnx runs it on onnxruntime)",
        description="Write the model (padding, native branch, Top-K selection, sigmoid) as one "
        "ONNX graph with the checkpoint's protocol, threshold, preprocessing, model name and "
        "commit in its metadata; checked with onnx.checker and against PyTorch on onnxruntime "
        "before it is written. What cannot be exported is refused, naming the operator.",
    )
    exp.add_argument(
        "--checkpoint", help="checkpoint file or run folder (default: the shipped na_irstd)"
    )
    exp.add_argument("--format", default="onnx", choices=["onnx"], help="onnx (default)")
    exp.add_argument("--out", required=True, help="the .onnx file to write")
    shape = exp.add_mutually_exclusive_group()
    shape.add_argument(
        "--size",
        type=frame_size,
        metavar="WxH",
        help="one fixed network input size, WIDTHxHEIGHT as in bench (e.g. 640x512)",
    )
    shape.add_argument("--dynamic", action="store_true", help="any input size (the default)")
    exp.set_defaults(func=commands.export)

    imp = verbs.add_parser(
        "import-weights",
        help="convert a peer's published state dict into a nairstd checkpoint",
        description="Load the file safely (weights_only), map every tensor onto our build of the "
        "method, check shapes, and write a checkpoint recording source, licence and the input "
        "preprocessing the weights expect (eval and predict honour it).",
    )
    imp.add_argument("method", help="whose weights: rpcanet")
    imp.add_argument("path", help="the published state dict (.pkl / .pth / .pt)")
    imp.add_argument("--out", required=True, help="the nairstd checkpoint to write")
    imp.add_argument("--source", help="where the weights came from (default: the method's repo)")
    imp.add_argument("--licence", help="their licence (default: the method's)")
    imp.set_defaults(func=commands.import_weights)

    check = verbs.add_parser(
        "ood",
        help="false targets per frame on target-free and rescaled frames, and Pd (nairstd.ood)",
        description="Our out-of-distribution check of one model: the dataset's TEST frames with "
        "targets, the same frames with their targets inpainted out (native size, 640x512, "
        "1920x1080), synthetic frames at those sizes, and the clutter proxy (target-free urban / "
        "road frames at 640x512-1920x1080, 8- and 16-bit, and the same with small targets); "
        "frames per set from the profile.",
    )
    check.add_argument("--checkpoint", help="checkpoint or run folder (default: the shipped one)")
    check.add_argument("--dataset", default="SIRST", help="whose test split (default SIRST)")
    check.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES)
    check.add_argument("--protocol", choices=PROTOCOLS, help="default: the checkpoint's")
    check.add_argument("--threshold", type=float, help="default: the checkpoint's, else 0.5")
    check.add_argument(
        "--reject-structures", default="auto", choices=REJECT_CHOICES, help=REJECT_HELP
    )
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=commands.ood)

    ref = verbs.add_parser(
        "reference", help="the claims' reference budget: train arms, commit result bundles"
    ).add_subparsers(dest="ref_verb", required=True)
    ref_run = ref.add_parser(
        "run",
        help="train every pending unit (arm x dataset x seed, and the doubled-budget seed)",
        description="Trains the reference profile's runs of claims C1-C5 in worker processes "
        "(resumable: finished units have a bundle in results/reference/, interrupted runs resume "
        "from the run cache) and writes each unit's result bundle as it finishes.",
    )
    ref_status = ref.add_parser("status", help="every planned unit: done, stale or pending")
    for sub in (ref_run, ref_status):
        sub.add_argument(
            "--claims", nargs="+", default=["C1", "C4", "C2", "C3", "C5"], help="claims (in order)"
        )
        sub.add_argument("--seeds", nargs="+", type=non_negative, help="default: 0 1 2")
        sub.add_argument("--datasets", nargs="+", help="training sets (default: each claim's)")
        sub.add_argument(
            "--no-doubled", action="store_true", help="leave out the twice-the-budget runs"
        )
        sub.add_argument("--results", help="bundle folder (default results/reference)")
    ref_run.add_argument("--workers", type=positive, default=2, help="processes (default 2)")
    ref_run.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    ref_run.add_argument("--limit", type=positive, help="run at most N pending units")
    ref_run.set_defaults(func=commands.reference_run)
    ref_tp = ref.add_parser(
        "throughput",
        help="training images/s per thread of each claim arm and deep baseline (real loop)",
        description="Each row trains a few optimiser steps of one arm (reference settings: "
        "whole 256x256 images, batch 8) in a fresh one-thread process and times the steps "
        "after a warm-up; --malloc both alternates glibc's default and our tuning.",
    )
    ref_tp.add_argument("--models", nargs="+", help="rows (default: every arm stage and baseline)")
    ref_tp.add_argument("--dataset", default="SIRST", help="training set (default SIRST)")
    ref_tp.add_argument("--steps", type=positive, default=14, help="optimiser steps per row")
    ref_tp.add_argument("--warmup", type=non_negative, default=4, help="untimed first steps")
    ref_tp.add_argument("--malloc", default="on", choices=["on", "off", "both"])
    ref_tp.add_argument("--repeats", type=positive, default=1, help="measurements per row")
    ref_tp.add_argument("--json", action="store_true")
    ref_tp.set_defaults(func=commands.reference_throughput)
    ref_status.set_defaults(func=commands.reference_status)

    prof = verbs.add_parser(
        "profiles",
        help="the run profiles (one name a line), the default one, or one profile's settings",
    )
    which = prof.add_mutually_exclusive_group()
    which.add_argument(
        "--default", action="store_true", help=f"print the default ({DEFAULT_PROFILE})"
    )
    which.add_argument("--show", choices=PROFILES, help="print every setting of a profile as JSON")
    prof.set_defaults(func=commands.profiles)
    return parser


def _error_line(err: BaseException) -> str:
    """The text after `error: ` for an exception that means bad input."""
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    if isinstance(err, MemoryError):
        return "out of memory"
    return str(err) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verb == "profiles":  # run_all.sh asks this before anything else: skip torch
        return args.func(args)
    from nairstd.train.config import env_threads
    from nairstd.train.loop import Stage1Missing
    from nairstd.train.runs import RunInProgress

    # What a user can cause by bad input; anything else is a bug and keeps its traceback.
    user_errors = (DataError, ValueError, OSError, MemoryError, RunInProgress, Stage1Missing)
    # Our own data warnings (e.g. a mask resized) are one readable line each.
    previous_format = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {message}\n"
    try:
        threads = env_threads()
        if threads is not None and args.verb in ("eval", "predict", "bench", "calibrate", "export"):
            import torch

            # Same override the training runs honour (0: torch's default).
            torch.set_num_threads(threads or torch.get_num_threads())
        return args.func(args)
    except user_errors as err:
        print(f"error: {_error_line(err)}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = previous_format
