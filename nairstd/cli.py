"""Command line: `python -m nairstd VERB ...` (also installed as `nairstd`).

Verbs: data stats | data synth | data hard | score | bench. Later issues add train, eval, predict.
Errors in the input (missing files, bad images) print one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from nairstd.data.images import DataError


def _cmd_data_stats(args: argparse.Namespace) -> int:
    from nairstd.data.index import discover_datasets, find_dataset
    from nairstd.data.stats import dataset_stats, format_stats

    if args.path:
        indices = [find_dataset(p, args.data_root) for p in args.path]
    else:
        indices = discover_datasets(args.data_root)
        if not indices:
            raise DataError("no dataset found in the data roots; give a PATH or set NAIRSTD_DATA")
    all_stats = [dataset_stats(index) for index in indices]
    if args.json:
        print(json.dumps(all_stats, indent=2))
    else:
        print("\n\n".join(format_stats(s) for s in all_stats))
    return 0


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from nairstd.data.synthetic import PRESETS, preset, write_dataset
    from nairstd.paths import generated_data_root

    out_root = Path(args.out) if args.out else generated_data_root()
    for name in args.name or list(PRESETS):
        path = write_dataset(out_root, name, preset(name, args.profile))
        print(f"{name}: {path}")
    return 0


def _cmd_data_hard(args: argparse.Namespace) -> int:
    from nairstd.data.hard import build_irstd_hard
    from nairstd.data.index import find_dataset
    from nairstd.paths import generated_data_root

    sources = [find_dataset(s, args.data_root) for s in args.sources]
    out_root = Path(args.out) if args.out else generated_data_root()
    hard = build_irstd_hard(sources, out_root)
    print(f"{hard.name}: {len(hard.split('test'))} test images in {hard.root}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from nairstd.data.index import _read_list as read_list
    from nairstd.data.index import find_dataset
    from nairstd.metrics import format_metrics
    from nairstd.score import score_folder

    index = find_dataset(args.data, args.data_root)
    if args.list:
        list_file = Path(args.list)
        if not list_file.is_file():
            raise DataError(f"{list_file}: list file not found")
        stems = read_list(list_file)
    else:
        stems = index.split(args.split)
    if not stems:
        raise DataError(f"{index.root}: split {args.split!r} is empty")
    result = score_folder(args.pred, index, stems, protocol=args.protocol)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{index.name} ({len(stems)} images, protocol {args.protocol}): {format_metrics(result)}"
        )
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from nairstd import bench

    return bench.main(args.rest) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nairstd",
        description="Na-IRSTD reproduction: data, scoring, benchmarks.",
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
    stats.set_defaults(func=_cmd_data_stats)

    synth = data.add_parser("synth", help="generate the synthetic datasets (deterministic)")
    synth.add_argument("name", nargs="*", help="preset name(s); default: all presets")
    synth.add_argument("--profile", default="quick", choices=["smoke", "quick", "paper"])
    synth.add_argument("--out", help="output folder (default: the project's data/)")
    synth.set_defaults(func=_cmd_data_synth)

    hard = data.add_parser("hard", help="build IRSTD-Hard from the test splits of datasets")
    hard.add_argument("sources", nargs="+", help="dataset folders or names")
    hard.add_argument("--out", help="output folder (default: the project's data/)")
    hard.set_defaults(func=_cmd_data_hard)

    score = verbs.add_parser("score", help="score a folder of predicted PNGs against a dataset")
    score.add_argument("--pred", required=True, help="folder of PNGs: same stem, probability x 255")
    score.add_argument("--data", required=True, help="dataset folder or name")
    group = score.add_mutually_exclusive_group()
    group.add_argument("--split", default="test", help="train, val, test or all (default test)")
    group.add_argument("--list", help="file listing the image stems to score")
    score.add_argument("--protocol", default="native", choices=["native", "resize256"])
    score.add_argument("--json", action="store_true", help="print JSON")
    score.set_defaults(func=_cmd_score)

    bench = verbs.add_parser("bench", help="benchmarks (python -m nairstd bench model --help)")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Our own data warnings (e.g. a mask resized) are one readable line each.
    previous_format = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {message}\n"
    try:
        return args.func(args)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = previous_format
