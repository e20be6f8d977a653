"""REPORT.md indexing and the failing-cell message run_all.sh prints."""

from __future__ import annotations

import nbformat

from nairstd.report import failing_cell, write_report


def test_failing_cell_names_cell_and_error(tmp_path):
    nb = nbformat.v4.new_notebook()
    ok = nbformat.v4.new_code_cell("x = 1")
    bad = nbformat.v4.new_code_cell("train(model)\nmore()")
    bad.outputs = [
        nbformat.v4.new_output("error", ename="ValueError", evalue="bad K", traceback=[])
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), ok, bad]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    message = failing_cell(path)
    assert message.startswith("cell 2 ('train(model)')") and "ValueError: bad K" in message


def test_report_lists_tables_and_figures(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "figures").mkdir()
    (tmp_path / "tables" / "table2_datasets.csv").write_text("a\n1\n")
    (tmp_path / "tables" / "table2_datasets.md").write_text("# Table II - datasets\n")
    (tmp_path / "figures" / "fig3_target_sizes.png").write_bytes(b"png")
    report = write_report("smoke", {"01_data_prep": 12.0}, out=tmp_path).read_text()
    assert "profile: **smoke**" in report and "commit:" in report and "machine:" in report
    assert "[Table II - datasets](tables/table2_datasets.md)" in report
    assert "figures/fig3_target_sizes.png" in report and "| 01_data_prep | 12 |" in report
