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
# # 01 — Data preparation (Table II, Fig. 3)
#
# Generates the synthetic datasets (the embedded default and the stand-in for the simulated
# NUDT-SIRST), validates every dataset found in the data roots (`data/` and `NAIRSTD_DATA`),
# builds IRSTD-Hard from the test splits at hand, and writes Table II, Fig. 3 (cumulative
# target-size curves) and a sample grid to `outputs/`.

# %% tags=["parameters"]
profile = "quick"  # smoke | quick | paper: how many synthetic images are generated
data_root = None  # extra dataset folder(s); None: NAIRSTD_DATA and data/
datasets = None  # restrict to these dataset names (list); None: every dataset found
output_dir = None  # None: the project's outputs/

# %%
from pathlib import Path

from IPython.display import Image, Markdown, display

from nairstd.paths import outputs_root
from nairstd.reproduce import data_prep

out = Path(output_dir) if output_dir else outputs_root()
tables_dir, figures_dir = out / "tables", out / "figures"

# %% [markdown]
# ## Datasets: generate, find, validate

# %%
indices = data_prep.prepare_datasets(profile, data_root, datasets)
validation = data_prep.validate(indices)
display(validation.drop(columns=["warning_text"]))
for _, row in validation[validation["warnings"] > 0].iterrows():
    print(f"{row['dataset']}: {row['warning_text']}")
assert validation["masks_binary"].all(), "a dataset has non-binary masks (see table)"

# %% [markdown]
# ## Table II — dataset statistics beside the paper's

# %%
table2 = data_prep.table2(indices, tables_dir, profile)
display(Markdown((tables_dir / "table2_datasets.md").read_text()))

# %% [markdown]
# ## Fig. 3 — cumulative target-size curves (test splits, 256x256)

# %%
targets = data_prep.fig3(indices, figures_dir / "fig3_target_sizes.png")
display(Image(filename=str(figures_dir / "fig3_target_sizes.png")))

# %% [markdown]
# ## Samples with mask contours

# %%
data_prep.samples_figure(indices, figures_dir / "data_samples.png")
display(Image(filename=str(figures_dir / "data_samples.png")))
