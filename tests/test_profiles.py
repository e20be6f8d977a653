"""One home per idea: every per-profile setting in `nairstd.profiles.Profile`, every protocol
name in `nairstd.protocols`; the CLI, run_all.sh and the notebooks read them from there."""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
from pathlib import Path

import pytest

from nairstd.cli import build_parser, main
from nairstd.data.synthetic import PRESETS, preset
from nairstd.profiles import DEFAULT_PROFILE, PROFILES, get_profile
from nairstd.protocols import PROTOCOLS, check_protocol
from nairstd.reproduce.main_tables import profile_methods
from nairstd.train.config import STAGES, profile_config, profile_settings, profile_threads

REPO = Path(__file__).resolve().parents[1]


def _options(parser: argparse.ArgumentParser, dest: str, path: str = ""):
    """(command path, action) of every option `dest` in the parser and its subcommands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, dest, f"{path} {name}".strip())
        elif action.dest == dest:
            yield path, action


def test_every_profile_and_protocol_option_of_the_cli_reads_the_one_list():
    parser = build_parser()
    profiles = list(_options(parser, "profile"))
    protocols = list(_options(parser, "protocol"))
    assert {p for p, _ in profiles} == {"data synth", "data clutter", "train", "ood"}
    assert {p for p, _ in protocols} == {"score", "train", "eval", "predict", "ood", "calibrate"}
    for _, action in profiles:
        assert tuple(action.choices) == PROFILES and action.default == DEFAULT_PROFILE
    for _, action in protocols:
        assert tuple(action.choices) == PROTOCOLS


@pytest.mark.parametrize("module", ["nairstd.report"])
def test_the_other_entry_points_check_the_profile_against_the_one_list(module, capsys):
    import importlib

    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(["--profile", "huge"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'huge'" in err and all(name in err for name in PROFILES)


def test_the_protocol_names_are_spelt_once():
    """No "resize256" string literal in the package outside nairstd/protocols.py."""
    found = []
    for file in sorted((REPO / "nairstd").rglob("*.py")):
        if file.name == "protocols.py":
            continue
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Constant) and node.value == "resize256":
                found.append(f"{file.relative_to(REPO)}:{node.lineno}")
    assert found == []
    assert check_protocol("native") == "native"
    with pytest.raises(ValueError, match="resize256, native"):
        check_protocol("resize512")


@pytest.mark.parametrize("profile", PROFILES)
def test_a_single_run_takes_its_settings_from_the_profile(profile):
    p = get_profile(profile)
    assert profile_threads(profile) == p.training.get("threads")
    for stage in STAGES:
        settings = profile_settings(profile, stage)
        assert settings == {**p.training, **p.stages[stage]}
        config = profile_config(profile, stage)
        assert all(
            getattr(config, k) == (v or None if k == "crop_size" else v)
            for k, v in settings.items()
        )
    with pytest.raises(ValueError, match="stage"):
        profile_settings(profile, "3")


@pytest.mark.parametrize("profile", PROFILES)
def test_synthetic_sizes_and_table_methods_come_from_the_profile(profile):
    p = get_profile(profile)
    for name, recipe in PRESETS.items():
        n = preset(name, profile).n_images
        assert n == (recipe.n_images if p.synthetic_images is None else p.synthetic_images)
    deep, classical = profile_methods(profile)
    assert "na_irstd" in deep and classical
    if p.deep_methods is not None:
        assert deep == list(p.deep_methods)


def test_profiles_command_lists_names_default_and_settings(capsys):
    def cli(*args: str) -> str:
        assert main(["profiles", *args]) == 0
        return capsys.readouterr().out

    assert cli().split() == list(PROFILES)
    assert cli("--default").strip() == DEFAULT_PROFILE
    shown = json.loads(cli("--show", "smoke"))
    assert shown["name"] == "smoke" and shown["stages"]["1"] == get_profile("smoke").stages["1"]


def test_run_all_refuses_an_unknown_profile_naming_the_known_ones():
    done = subprocess.run(
        ["bash", str(REPO / "run_all.sh"), "--profile", "huge"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "unknown profile huge" in done.stderr
    assert all(name in done.stderr for name in PROFILES)


def test_profiles_import_without_the_environment():
    """run_all.sh reads the profile names with any python3, before it bootstraps .venv (a wrong
    --profile is refused without an install): nairstd.profiles must need the standard library only."""
    blocked = "import sys; sys.modules.update(torch=None, numpy=None, pandas=None)"
    done = subprocess.run(
        ["python3", "-c", f"{blocked}; from nairstd.profiles import PROFILES; print(*PROFILES)"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == list(PROFILES)
