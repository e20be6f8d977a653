# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 — Downsampling study (Table I, Fig. 1)
#
# Does downsampling hurt small targets? The detector is trained on native-resolution input and
# on input halved before the detector (logits upsampled back), per dataset, and both are scored
# on the test split. Fig. 1 shows the detector's stage activations on images with small targets.

# %% tags=["parameters"]
profile = "quick"  # smoke | quick | paper
datasets = ["SIRST", "synthetic-nudt"]  # datasets with a train split to study (missing: skipped)
output_dir = None  # None: the project's outputs/

# %%
from IPython.display import Image, Markdown, display

from nairstd.reproduce import common, downsampling

tables_dir, figures_dir = common.output_dirs(output_dir)
indices = common.available(datasets)
print("datasets:", [i.name for i in indices])

# %% [markdown]
# ## Table I — native vs 2x downsampled input

# %%
table1, runs = downsampling.table1(profile, indices, tables_dir)
display(Markdown((tables_dir / "table1_downsampling.md").read_text()))

# %% [markdown]
# ## Fig. 1 — detector activations across stages

# %%
fig1 = downsampling.figure1(runs, indices[0], figures_dir / "fig1_feature_maps.png")
display(Image(filename=str(fig1)))
