"""Interactive explorer of the Top-K patch selection (notebook 06, JupyterLab + ipywidgets).

    from nairstd.widgets import explore_selection
    explore_selection(model, index, stems)     # a widget: image, K, threshold, sigma

The explorer shows, for one test image (resized to 256x256 as in the paper's protocol):
the selected patches on the image (green: selected and holds a target, red: selected without a
target, dashed yellow: target patches that were missed), the soft patch labels (Eq. 10-11) for the
chosen sigma, and the prediction binarised at the chosen threshold with hits, misses and false
alarms marked (metrics.match_objects). The per-image numbers are a text line beside the figure
(an HTML widget), not drawn into it, so they can be selected and copied.

The dropdown labels each image with its smallest target's area (at the explorer's size) and the
explorer opens on a small-target image. The figure is drawn to stay readable at 1000 px wide
(`min_font_pt_at`: no text under 8 pt at that width) and no marker is drawn over a label.

The model forward is cached per (image, K), so the threshold and sigma sliders only redraw.
The drawing helpers (`outline_patches`, `mark_objects`, ...) live in `nairstd.plots` (Fig. 5 uses them too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import pyplot as plt

from nairstd.data.images import resize_image, resize_mask_nearest, standardize
from nairstd.data.index import DatasetIndex
from nairstd.data.stats import SMALL_TARGET_PX, target_areas
from nairstd.grid import pad_array, patch_means
from nairstd.metrics import IRSTDMetrics, TopKCoverage, target_patch_flags
from nairstd.models.scoring import soft_weight_map
from nairstd.plots import (
    TARGET_PATCH,
    mark_objects,
    object_legend_handles,
    outline_patches,
    patch_legend_handles,
)

# Readable at 1000 px wide (a JupyterLab output area in a 1440 px window): text of FONT_PT in a
# figure W inches wide shows at FONT_PT * 1000 / (96 * W) pt, about 9.9 / W * 9 pt; it must stay
# >= 8 pt (`min_font_pt_at` measures it on the drawn figure, legends and colour bar included).
FIGSIZE = (10.5, 4.6)
FONT_PT = 9.0
TITLE_PT = 10.5


# -------------------------------------------------------------------------------------------------
# Data and model helpers
# -------------------------------------------------------------------------------------------------
def load_sample(index: DatasetIndex, stem: str, size: int | None = 256):
    """(image in [0, 1], bool mask, network input (1, 1, H, W)) of one image; resized to
    size x size (the resize256 protocol) unless size is None (native)."""
    image, mask = index.load(stem)
    if size:
        image = resize_image(image, (size, size))
        mask = resize_mask_nearest(mask, (size, size))
    x = torch.from_numpy(np.ascontiguousarray(standardize(image.astype(np.float32))))[None, None]
    return image, mask, x


def image_label(stem: str, areas: np.ndarray) -> str:
    """Dropdown label: the stem and its smallest target's area (px), small ones flagged."""
    if not len(areas):
        return f"{stem} - no target"
    every = f", all < {SMALL_TARGET_PX} px" if areas.max() < SMALL_TARGET_PX else ""
    return f"{stem} - smallest target {int(areas.min())} px{every}"


# -------------------------------------------------------------------------------------------------
# The explorer
# -------------------------------------------------------------------------------------------------
@dataclass
class Forward:
    """One cached forward pass: probabilities (H, W), selected patch ids (K,), scores (N,)."""

    prob: np.ndarray
    selected: np.ndarray
    scores: np.ndarray
    grid: tuple[int, int]


class SelectionExplorer:
    """State behind `explore_selection`: cached samples and forwards, and the rendering."""

    def __init__(
        self,
        model: torch.nn.Module,
        index: DatasetIndex,
        stems: list[str],
        size: int | None = 256,
        start: str | None = None,
    ) -> None:
        from nairstd.models.traits import has_native_branch, unwrap

        self.model = unwrap(model).cpu().eval()
        if not has_native_branch(self.model):
            raise ValueError(
                f"{type(self.model).__name__} has no native branch / Top-K selection to explore"
            )
        if not stems:
            raise ValueError("explore_selection needs at least one image stem")
        self.index = index
        self.stems = list(stems)
        self.size = size
        self.patch_size = int(self.model.patch_size)
        self.multiple = int(getattr(self.model, "pad_multiple", self.patch_size))
        self.default_k = int(self.model.top_k) if isinstance(self.model.top_k, int) else 5
        self._samples: dict[str, tuple[np.ndarray, np.ndarray, torch.Tensor]] = {}
        self._forwards: dict[tuple[str, int], Forward] = {}
        self.n_forward = 0  # forward passes run (the cache's misses)
        if start is not None and start not in self.stems:
            raise ValueError(f"start image {start!r} is not among the explorer's images")
        self._start = start

    def areas(self, stem: str) -> np.ndarray:
        """Target areas (px, 8-connected) of one image at the explorer's size."""
        return target_areas(self.sample(stem)[1])

    @property
    def start(self) -> str:
        """The image the explorer opens on: `start`, else the first whose every target is
        under SMALL_TARGET_PX px, else the one with the smallest target."""
        if self._start is None:
            sized = [(self.areas(s), s) for s in self.stems]
            small = [s for a, s in sized if len(a) and a.max() < SMALL_TARGET_PX]
            ranked = sorted((a.min(), s) for a, s in sized if len(a))
            self._start = small[0] if small else ranked[0][1] if ranked else self.stems[0]
        return self._start

    def options(self) -> list[tuple[str, str]]:
        """(label, stem) of every image for the dropdown, in split order."""
        return [(image_label(s, self.areas(s)), s) for s in self.stems]

    def sample(self, stem: str) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        if stem not in self._samples:
            self._samples[stem] = load_sample(self.index, stem, self.size)
        return self._samples[stem]

    def forward(self, stem: str, k: int) -> Forward:
        """The model's prediction and selection for image `stem` with K = k (cached)."""
        key = (stem, int(k))
        if key not in self._forwards:
            _, _, x = self.sample(stem)
            before = self.model.top_k
            self.model.top_k = int(k)
            try:
                with torch.inference_mode():
                    out = self.model(x, return_extras=True)
            finally:
                self.model.top_k = before
            self.n_forward += 1
            self._forwards[key] = Forward(
                prob=torch.sigmoid(out["logits"].float())[0, 0].numpy(),
                selected=out["selected"][0].numpy(),
                scores=out["patch_scores"][0].float().numpy(),
                grid=tuple(int(g) for g in out["patch_grid"]),
            )
        return self._forwards[key]

    def stats(self, stem: str, k: int, threshold: float) -> dict[str, Any]:
        """Per-image coverage / precision of the selection and IoU / Pd / Fa at `threshold`."""
        _, mask, _ = self.sample(stem)
        fwd = self.forward(stem, k)
        flags = target_patch_flags(pad_array(mask, self.multiple), self.patch_size)
        cov = TopKCoverage()
        cov.update(fwd.selected, flags)
        metrics = IRSTDMetrics(threshold=threshold)
        match = metrics.update(fwd.prob, mask)
        return {**cov.compute(), **metrics.compute(), "match": match, "flags": flags}

    def summary(self, stem: str, k: int, threshold: float) -> str:
        s = self.stats(stem, k, threshold)
        cov = "n/a (no target)" if np.isnan(s["coverage"]) else f"{s['coverage']:.0f}%"
        pd_ = "n/a" if np.isnan(s["Pd"]) else f"{s['Pd']:.0f}%"
        return (
            f"{stem}: K = {k}: coverage {cov} ({s['n_selected_target']}/{s['n_target_patches']} "
            f"target patches), precision {s['precision']:.0f}% | threshold {threshold:.2f}: "
            f"IoU {s['IoU']:.1f}%, Pd {pd_} ({s['n_matched']}/{s['n_gt_objects']}), "
            f"Fa {s['Fa']:.1f}e-6 ({s['n_false_objects']} false alarm object(s))"
        )

    def render(self, stem: str, k: int, threshold: float = 0.5, sigma: float = 8.0) -> plt.Figure:
        """The three panels for one setting (a matplotlib figure, not shown). The summary is
        not drawn: it is `summary()` (text). Sized so that its smallest text (FONT_PT) is still
        8 pt when the figure is shown 1000 px wide."""
        image, mask, _ = self.sample(stem)
        fwd = self.forward(stem, k)
        s = self.stats(stem, k, threshold)
        p = self.patch_size
        fig, axes = plt.subplots(1, 3, figsize=FIGSIZE)

        ax = axes[0]
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        outline_patches(ax, fwd.selected, s["flags"], fwd.grid, p)
        ax.set_title(
            f"Top-{k} selected patches (of {fwd.grid[0] * fwd.grid[1]})", fontsize=TITLE_PT
        )
        ax.legend(
            handles=patch_legend_handles(),
            loc="upper center",
            bbox_to_anchor=(0.5, -0.02),
            fontsize=FONT_PT,
            ncol=1,
            facecolor="0.8",
        )

        ax = axes[1]
        padded = pad_array(mask, self.multiple)
        labels = patch_means(soft_weight_map(padded, sigma), p)
        h, w = padded.shape
        im = ax.imshow(
            labels,
            cmap="viridis",
            vmin=0,
            vmax=max(labels.max(), 1e-6),
            extent=(-0.5, w - 0.5, h - 0.5, -0.5),
            interpolation="nearest",
        )
        for r in range(labels.shape[0]):
            for c in range(labels.shape[1]):
                if labels[r, c] >= 0.005:
                    x, y = c * p + p / 2, r * p + p / 2
                    text = f"{labels[r, c]:.2f}".removeprefix("0")
                    ink = "black" if labels[r, c] > 0.6 * labels.max() else "white"
                    ax.text(x, y, text, ha="center", va="center", fontsize=FONT_PT, color=ink)
        # The patches holding a target are outlined along their edges (a ring at the target
        # would cover the label at the patch centre).
        outline_patches(
            ax, [], s["flags"], fwd.grid, p, missed_colour=TARGET_PATCH, missed_style="-"
        )
        ax.set_xlim(-0.5, mask.shape[1] - 0.5)
        ax.set_ylim(mask.shape[0] - 0.5, -0.5)
        ax.set_title(f"soft patch labels y_i (sigma = {sigma:g} px)", fontsize=TITLE_PT)
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        bar.set_label("y_i (red: patch holds a target)", fontsize=FONT_PT)
        bar.ax.tick_params(labelsize=FONT_PT)

        ax = axes[2]
        ax.imshow(fwd.prob > threshold, cmap="gray", vmin=0, vmax=1)
        if mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors="cyan", linewidths=0.6)
        mark_objects(ax, s["match"])
        ax.set_title(f"prediction > {threshold:.2f} (cyan: truth)", fontsize=TITLE_PT)
        ax.legend(
            handles=object_legend_handles(),
            loc="upper center",
            bbox_to_anchor=(0.5, -0.02),
            fontsize=FONT_PT,
            ncol=1,
            facecolor="0.8",
        )
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        return fig

    def save(
        self,
        path: str | Path,
        stem: str | None = None,
        k: int | None = None,
        threshold: float = 0.5,
        sigma: float = 8.0,
    ) -> Path:
        """The panels of one setting (default: the opening view) saved as a PNG, atomically."""
        from nairstd.plots import save_figure

        stem = stem or self.start
        return save_figure(self.render(stem, k or self.default_k, threshold, sigma), path)

    def widget(self, snapshot: str | Path | None = None):
        """The ipywidgets explorer: a VBox of the controls, the summary line (HTML text) and
        the figure. `snapshot`: a PNG of the opening view, shown where no live widget can be
        (an untrusted or exported notebook), with a sentence naming it as the plain-text form."""
        import base64
        import html

        import ipywidgets as widgets
        from IPython.display import display

        image = widgets.Dropdown(
            options=self.options(),
            value=self.start,
            description="image",
            layout=widgets.Layout(width="440px"),
        )
        k = widgets.IntSlider(
            value=min(max(self.default_k, 1), 16),
            min=1,
            max=16,
            description="K",
            continuous_update=False,
        )
        threshold = widgets.FloatSlider(
            value=0.5,
            min=0.05,
            max=0.95,
            step=0.05,
            description="threshold",
            continuous_update=False,
        )
        sigma = widgets.FloatSlider(
            value=8.0,
            min=1.0,
            max=32.0,
            step=1.0,
            description="sigma (px)",
            continuous_update=False,
        )
        summary = widgets.HTML(layout=widgets.Layout(margin="4px 0 0 8px"))

        def update(image: str, k: int, threshold: float, sigma: float) -> None:
            fig = self.render(image, k, threshold, sigma)
            summary.value = f"<code>{html.escape(self.summary(image, k, threshold))}</code>"
            display(fig)
            plt.close(fig)

        still = Path(snapshot) if snapshot else None
        note = (
            f"Selection explorer (a live widget: run the notebook in JupyterLab); its opening "
            f"view is saved as {still}"
            if still
            else "Selection explorer (a live widget)"
        )

        class ExplorerBox(widgets.VBox):
            """A VBox whose fallback forms are the saved PNG and a plain sentence, not
            `VBox(children=...)` text: JupyterLab shows the widget wherever it can."""

            def _repr_mimebundle_(self, **kwargs):
                data = super()._repr_mimebundle_(**kwargs) or {}
                data["text/plain"] = note
                if still is not None and still.is_file():
                    data["image/png"] = base64.b64encode(still.read_bytes()).decode("ascii")
                return data

        controls = {"image": image, "k": k, "threshold": threshold, "sigma": sigma}
        out = widgets.interactive_output(update, controls)
        box = ExplorerBox(
            [widgets.HBox([image, k]), widgets.HBox([threshold, sigma]), summary, out]
        )
        box.explorer = self  # for tests and for reuse from the notebook
        box.update = update
        box.controls = controls
        box.summary = summary
        return box


def explore_selection(
    model: torch.nn.Module,
    dataset_index: DatasetIndex,
    stems: list[str],
    size: int | None = 256,
    start: str | None = None,
    snapshot: str | Path | None = None,
):
    """An ipywidgets explorer of the Top-K selection of `model` on the images `stems` of a
    dataset: dropdown for the image (labelled with its smallest target's area; opens on `start`,
    default a small-target image), sliders for K (1..16), the decision threshold (0.05..0.95)
    and the soft-label sigma (1..32 px). With `snapshot` (a path), the opening view is saved
    there first (PNG) and is the widget's static form. Returns the widget (display it in
    JupyterLab); its `.explorer` (a SelectionExplorer) renders the same panels without a display."""
    explorer = SelectionExplorer(model, dataset_index, stems, size, start)
    if snapshot is not None:
        explorer.save(snapshot)
    return explorer.widget(snapshot)
