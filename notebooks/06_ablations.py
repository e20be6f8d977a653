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
# # 06 — Ablations: Tables IV and V, the impact of K, Fig. 5
#
# - **Table IV** (native-resolution branch): the detector alone (w/o native-resolution branch,
#   one-stage L_seg), the Non-Patch-based CNN branch (`dense_cnn`, Stage 1 + Stage 2) and the
#   patch-based 2D+1D branch (Na-IRSTD, the notebook-04 run).
# - **Table V** (training): Na-IRSTD one-stage (from scratch, L_seg + L_score) and two-stage, each
#   with hard and soft patch labels.
# - **Impact of K**: Top-K coverage and detection metrics of the two-stage soft model for
#   K = 1, 2, 3, 5, 8, 16. K is changed at test time; the paper retrains per K (`retrain_k`, paper
#   profile only).
# - **Fig. 5**: stage-1 features of the detector and of the native branch on images with small
#   targets.
#
# Every run comes from the run cache (`outputs/runs/`): runs of notebooks 03-04 are reused, and a
# second execution of this notebook trains nothing; evaluations are cached beside their run.

# %% tags=["parameters"]
profile = "quick"  # smoke | quick | paper
dataset = "SIRST"  # training set; falls back to "synthetic" (made by notebook 01) when not found
interactive = False  # True: show the ipywidgets explorer (JupyterLab); batch runs save figures
retrain_k = False  # paper profile: one Stage-2 run per K instead of changing K at test time
data_root = None  # extra dataset folder(s); None: NAIRSTD_DATA and data/
output_dir = None  # None: the project's outputs/

# %%
from IPython.display import Image, Markdown, display

from nairstd.reproduce import ablation_tables, ablations, arms, common

tables_dir, figures_dir = common.output_dirs(output_dir)
dataset = common.training_set(dataset, data_root)
test_sets = arms.test_sets(dataset, data_root)
sets = arms.claim_sets(profile, data_root, "ablation_sets")
claim_sets = [dataset, *[d for d in sets if d != dataset]]
print(
    f"profile {profile}; claim sets {claim_sets}; {dataset} models tested on {[i.name for i in test_sets]}"
)

# %% [markdown]
# ## Train (or reuse) every arm of Tables IV and V, every seed, in parallel

# %%
trained = ablation_tables.train_ablation_arms(profile, claim_sets, data_root)
soft = trained[(dataset, "two_stage_soft", min(s for _, _, s in trained))]

# %% [markdown]
# ## Table IV — the native-resolution branch (claim C2)

# %%
table4 = ablation_tables.branch_table(trained, profile, data_root)
c2 = ablation_tables.claim_c2(trained, profile, data_root)
ablation_tables.write_claim_table(
    table4,
    c2,
    trained,
    tables_dir,
    profile,
    "table4_branch_ablation",
    "Table IV - branch ablation",
    [],
)
display(Markdown((tables_dir / "table4_branch_ablation.md").read_text()))
display(Markdown((tables_dir / "table4_branch_ablation_claim_c2.md").read_text()))

# %% [markdown]
# ## Table V — one-stage vs two-stage training, hard vs soft labels (claim C3)

# %%
table5 = ablation_tables.stage_label_table(trained, profile, data_root)
c3 = ablation_tables.claim_c3(trained, profile, data_root)
ablation_tables.write_claim_table(
    table5,
    c3,
    trained,
    tables_dir,
    profile,
    "table5_stage_label",
    "Table V - one-/two-stage training x hard/soft labels",
    [],
)
display(Markdown((tables_dir / "table5_stage_label.md").read_text()))
display(Markdown((tables_dir / "table5_stage_label_claim_c3.md").read_text()))

# %% [markdown]
# ## Impact of K (Fig. 7, K) — coverage and detection against K

# %%
k_table, retrained = ablations.k_impact(
    soft, test_sets[0], profile, retrain_k=retrain_k, data_root=data_root
)
ablations.write_k_table(k_table, soft, test_sets[0], tables_dir, profile, retrained)
ablations.fig_k(k_table, figures_dir / "fig7_k_impact.png", retrained)
display(Markdown((tables_dir / "table_k_impact.md").read_text()))
display(Image(filename=str(figures_dir / "fig7_k_impact.png")))

# %% [markdown]
# ## Fig. 5 — stage-1 features: detector vs native-resolution branch
#
# Test images with small targets (cyan rings). Each feature map is the channel mean of |F| at
# stage 1, brought to the image lattice (the native-branch patches are put back in place), scaled
# to its own range. The patch grid visible in the native-branch map is the GPM's per-patch
# residual (Eq. 9: the attention output A_i is added to every pixel of patch i).

# %%
model = soft.final.load_model()
stems = ablations.small_target_stems(test_sets[0], n=3)
ablations.fig5(model, test_sets[0], stems, figures_dir / "fig5_features.png", soft.final.run_id)
display(Image(filename=str(figures_dir / "fig5_features.png")))

# %% [markdown]
# ## Explore the Top-K selection
#
# With `interactive = True` (JupyterLab): pick a test image (each is labelled with its smallest
# target's area; the explorer opens on a small-target image), change K, the decision threshold and
# the soft-label sigma; the line above the figure gives the image's numbers. In both modes the
# opening view is saved as `selection_explorer.png`; batch runs show it with its numbers.

# %%
from nairstd.widgets import SelectionExplorer

explorer = SelectionExplorer(model, test_sets[0], test_sets[0].split("test"), start=stems[0])
path = explorer.save(figures_dir / "selection_explorer.png")  # the opening view, both modes
if interactive:
    display(explorer.widget(snapshot=path))
else:
    print(explorer.summary(explorer.start, explorer.default_k, 0.5))
    display(Image(filename=str(path)))
