"""Independent evaluations spread over worker processes (notebook 05's Table III and OOD passes)."""

from __future__ import annotations

import pytest
from conftest import write_toolbox_dataset

from nairstd.data import open_dataset
from nairstd.reproduce import main_tables
from nairstd.reproduce.parallel import map_in_workers


def test_map_in_workers_keeps_task_order_whatever_starts_first():
    tasks = [(2, 3), (3, 2), (5, 1), (7, 0)]
    # the costliest task (index 3) starts first; results still come back in task order
    assert map_in_workers(pow, tasks, workers=2, costs=[1, 3, 2, 9]) == [8, 9, 5, 1]
    assert map_in_workers(pow, tasks, workers=1) == [8, 9, 5, 1]


def test_map_in_workers_names_the_task_that_failed():
    with pytest.raises(RuntimeError, match="the bad one failed"):
        map_in_workers(int, [("7",), ("x",)], workers=2, labels=["seven", "the bad one"])


def test_table3_classical_rows_in_workers_match_one_process(tmp_path):
    index = open_dataset(write_toolbox_dataset(tmp_path, "TOY", n=6))
    tables = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}" / "tables"
        out.mkdir(parents=True)
        table = main_tables.table3("smoke", {}, [index], out, ["tophat", "mpcm"], workers=workers)
        tables[workers] = table[table["dataset"] == "TOY"].reset_index(drop=True)
    assert list(tables[2]["method"]) == ["Top-Hat", "MPCM"]  # the table's order, not the pool's
    cols = ["method", "IoU", "nIoU", "Pd", "Fa", "FA_per_image"]
    assert tables[1][cols].equals(tables[2][cols])
