"""Every numbered notebook executed through papermill in the smoke profile, as run_all.sh does."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import papermill
import pytest
from conftest import REPO, SHARED_DATASETS

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def smoke_env(tmp_path_factory):
    """One generated-data and outputs folder for the whole sequence: later notebooks reuse runs."""
    base = tmp_path_factory.mktemp("smoke")
    saved = {k: os.environ.get(k) for k in ("NAIRSTD_GENERATED", "NAIRSTD_OUTPUTS", "NAIRSTD_DATA")}
    os.environ["NAIRSTD_GENERATED"] = str(base / "data")
    os.environ["NAIRSTD_OUTPUTS"] = str(base / "outputs")
    if (SHARED_DATASETS / "SIRST").is_dir():
        os.environ["NAIRSTD_DATA"] = str(SHARED_DATASETS)
    yield base
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _isolated_outputs():
    """Override conftest's per-test isolation: the notebooks share smoke_env across tests."""


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_runs_in_smoke_profile(notebook: Path, smoke_env: Path):
    executed = smoke_env / "outputs" / "notebooks" / notebook.name
    executed.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(notebook),
        str(executed),
        parameters={"profile": "smoke"},
        cwd=str(notebook.parent),
        progress_bar=False,
        kernel_name="python3",
    )
    assert executed.is_file()


def test_notebooks_are_stored_without_outputs_and_paired():
    """Notebooks are reviewable as text: no stored outputs, and the .py twin holds the same code."""
    import jupytext

    assert NOTEBOOKS, "no notebooks found"
    for notebook in NOTEBOOKS:
        nb = nbformat.read(notebook, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, notebook.name
        twin = notebook.with_suffix(".py")
        assert twin.is_file(), f"{twin.name} missing (jupytext pair)"
        paired = jupytext.read(twin)
        code = [c.source for c in nb.cells if c.cell_type == "code"]
        assert code == [c.source for c in paired.cells if c.cell_type == "code"], (
            f"{notebook.name} and {twin.name} differ: run `jupytext --sync {twin}`"
        )


def test_parameters_cells_parse_without_papermill_warnings(caplog):
    """papermill skips (with a warning) a parameters line holding two '=' (one in a comment):
    every assignment of every parameters cell must come back as a parameter."""
    import logging

    from papermill.inspection import inspect_notebook

    for notebook in NOTEBOOKS:
        nb = nbformat.read(notebook, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        names = [
            line.split("=")[0].strip()
            for line in cell.source.splitlines()
            if "=" in line and not line.lstrip().startswith("#")
        ]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="papermill"):
            found = inspect_notebook(str(notebook))
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], notebook.name
        assert list(found) == names, notebook.name
