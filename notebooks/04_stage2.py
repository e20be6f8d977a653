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
# # 04 — Stage 2: the full model
#
# Stage 2 starts from the soft-label Stage-1 run (notebook 03; trained here when it is missing),
# freezes the scorer, keeps the hard Top-K selection, and trains the detector, the injection and
# the native branch with L_seg = BCE + Dice: two parameter groups (main at lr_main, native branch
# at the smaller lr_native) and a fresh cosine schedule. The model kept is the best on the
# validation split (IoU); the test split is only measured.

# %% tags=["parameters"]
profile = "quick"  # smoke | quick | paper
dataset = "SIRST"  # falls back to "synthetic" (made by notebook 01) when not found
size = None  # model size (tiny | base); None: the profile's (tiny for smoke/quick, base for paper)
label = "soft"  # the Stage-1 labels to start from
seed = 0
data_root = None  # extra dataset folder(s); None: NAIRSTD_DATA and data/
output_dir = None  # None: the project's outputs/

# %%
from pathlib import Path

from IPython.display import Image, Markdown, display

from nairstd.paths import outputs_root
from nairstd.reproduce import arms, stage1, stage2

out = Path(output_dir) if output_dir else outputs_root()
tables_dir, figures_dir = out / "tables", out / "figures"
dataset = stage1.pick_dataset(dataset, data_root)
sets = arms.claim_sets(profile, data_root, "ablation_sets")
claim_sets = [dataset, *[d for d in sets if d != dataset]]
print(f"profile {profile}; shown: {dataset} (seed {seed}); claim sets: {claim_sets}")

# %% [markdown]
# ## Train (or reuse) Stage 2, every seed, in parallel

# %%
trained = stage2.train_stage2_arms(profile, claim_sets, label, size=size, data_root=data_root)
run = trained[(dataset, f"two_stage_{label}", seed)].final
print(f"shown: {run.run_id}, from Stage 1 {run.config.init_from}")

# %% [markdown]
# ## Training curves (from the run's log.csv)

# %%
stage2.training_curves(run, figures_dir / "stage2_curves.png")
display(Image(filename=str(figures_dir / "stage2_curves.png")))

# %% [markdown]
# ## The injection scale gamma_l per stage and epoch (Eq. 16; README "Injection gamma")

# %%
stage2.gamma_curves(trained, figures_dir / "stage2_gamma.png")
display(Image(filename=str(figures_dir / "stage2_gamma.png")))

# %% [markdown]
# ## Validation and test metrics of the selected models (mean ± std over seeds)

# %%
table = stage2.metrics_table(trained, dataset, profile, data_root=data_root)
stage2.write_metrics_table(table, trained, tables_dir, profile)
display(Markdown((tables_dir / "stage2_metrics.md").read_text()))
