# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 — Accuracy vs speed vs size (Fig. 8)
#
# Benchmarks every method measured in Table III (parameters, FLOPs, CPU latency) and plots its
# IoU against latency, bubble size = parameters. Run notebook 05 first.

# %% tags=["parameters"]
profile = "quick"  # smoke | quick | paper
train_set = "SIRST"  # the dataset whose Table III IoU is plotted (synthetic when absent)
output_dir = None  # None: the project's outputs/

# %%
from IPython.display import Image, Markdown, display

from nairstd.profiles import get_profile
from nairstd.reproduce import common, main_tables, tradeoff

tables_dir, figures_dir = common.output_dirs(output_dir)
dataset = common.training_set(train_set)
deep, classical = main_tables.profile_methods(profile)  # smoke: two of each
iters = get_profile(profile).latency_iters

# %%
bench = tradeoff.benchmark(deep, classical, iters=iters)
table = tradeoff.tradeoff_table(bench, tables_dir / "table3_main.csv", dataset, tables_dir, profile)
display(Markdown((tables_dir / "fig8_tradeoff.md").read_text()))

# %%
fig8 = tradeoff.figure8(table, figures_dir / "fig8_tradeoff.png", dataset)
display(Image(filename=str(fig8)))
