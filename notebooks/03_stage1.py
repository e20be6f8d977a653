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
# # 03 — Stage 1: patch relevance scoring (Fig. 7)
#
# Stage 1 trains only the native-resolution branch (PDE + GPM) and the scoring MLP with the score
# loss L_score (Eq. 12), once with the distance-aware **soft** labels (Eq. 10-11) and once with
# **hard** labels (a patch is 1 when it holds any target pixel). Runs are cached in
# `outputs/runs/`: a finished run is reused, an interrupted one resumes.
#
# Fig. 7: Top-K coverage (share of the target patches among the K selected) of soft vs hard
# labels on the test split, and coverage against K = 1, 2, 3, 5, 8, 16.
#
# Claim C4 (soft labels cover more target patches than hard ones; K = 5 is near saturation) is
# tested over every seed of the profile, on `dataset` and the profile's other claim sets, each
# Stage 1 on the Stage-1 share of the claims budget (the runs notebooks 04 and 06 start from).

# %% tags=["parameters"]
profile = "quick"  # smoke | quick | paper
dataset = "SIRST"  # falls back to "synthetic" (made by notebook 01) when not found
size = None  # model size (tiny | base); None: the profile's (tiny for smoke/quick, base for paper)
seed = 0
data_root = None  # extra dataset folder(s); None: NAIRSTD_DATA and data/
output_dir = None  # None: the project's outputs/

# %%
from pathlib import Path

from IPython.display import Image, Markdown, display

from nairstd.paths import outputs_root
from nairstd.reproduce import arms, stage1

out = Path(output_dir) if output_dir else outputs_root()
tables_dir, figures_dir = out / "tables", out / "figures"
dataset = stage1.pick_dataset(dataset, data_root)
claim_sets = [dataset, *[d for d in arms.claim_sets(profile, data_root) if d != dataset]]
print(f"profile {profile}; shown: {dataset} (seed {seed}); claim sets: {claim_sets}")

# %% [markdown]
# ## Train (or reuse) Stage 1 with soft and hard labels, every seed, in parallel

# %%
trained = stage1.train_stage1_arms(profile, claim_sets, size=size, data_root=data_root)
runs = stage1.seed_runs(trained, dataset, seed)
display(stage1.runs_summary(runs))

# %%
stage1.stage1_curves(runs, figures_dir / "stage1_curves.png")
display(Image(filename=str(figures_dir / "stage1_curves.png")))

# %% [markdown]
# ## Fig. 7 — Top-K coverage on the test split (images resized to 256x256, N = 64 patches)

# %%
coverage = stage1.coverage_table(runs, dataset, data_root=data_root, profile=profile)
stage1.write_fig7_table(coverage, tables_dir, profile, dataset)
stage1.fig7(coverage, figures_dir / "fig7_topk_coverage.png")
display(Markdown((tables_dir / "fig7_topk_coverage.md").read_text()))
display(Image(filename=str(figures_dir / "fig7_topk_coverage.png")))

# %% [markdown]
# ## Claim C4 over seeds: soft vs hard coverage at the default K, and saturation

# %%
stage1.claim_c4(trained, profile, tables_dir)
display(Markdown((tables_dir / "fig7_seeds.md").read_text()))
display(Markdown((tables_dir / "fig7_claim_c4.md").read_text()))
