"""Synthetic infrared small-target images (SPEC §5, "synthetic generator").

The embedded default dataset of the package when no real data is present, and the stand-in for the
simulated NUDT-SIRST dataset. Every image is a 256×256 8-bit grey frame of sky/cloud, sea/horizon or
ground/urban clutter (optionally two of them blended), with sensor noise (Gaussian plus a little
fixed-pattern row/column stripe noise) and an automatic-gain-control stretch, holding 1–5 small
targets and, in some images, hard negatives (bright clutter that is not a target).

Targets are Gaussian blobs (slightly elliptical, random orientation). The mask is exact: the pixels
where the blob's contribution is at least ``mask_threshold`` times its (sampled) peak. The target
area follows a truncated log-normal close to the real SIRST statistics (generated: median ~22 px,
mean ~28 px, ~46% under 20 px, range 1–100 px; SIRST: 20 px, 33 px, 46%, its mean raised by a few
targets above 100 px); the blob amplitude is set from a signal-to-clutter ratio (SCR) drawn from
``scr_range`` against the standard deviation of the local background, and the SCR actually
achieved in the final 8-bit image is reported per target. Targets never overlap each other
or the hard negatives, keep ``border_margin`` px from the border, and the mask's 8-connected
components are checked to be exactly the placed targets.

Hard negatives are bright clutter whose SHAPE differs from a target: long thin streaks (glints on
waves, wires, contrails), large bright blobs (warm roofs, sunlit cloud cores, several times the
largest target) and L-shaped edge glints (building corners). They are as bright as the targets, so a
detector has to use shape and size, not brightness, to reject them.

Determinism: image ``i`` of a config is generated from its own child seed
``SeedSequence(seed, spawn_key=(i,))`` — identical to ``SeedSequence(seed).spawn(n)[i]`` — so the
same config gives identical bytes and image ``i`` does not depend on how many images are generated.

Speed: vectorised numpy (FFT power-law noise, patch-wise blob rendering); see
``python -m nairstd bench synthetic`` (measure one core with ``taskset -c 0``).

Modules: ``presets`` (config, named presets), ``backgrounds`` (clutter and noise), ``generator``
(targets, hard negatives, one image), ``writer`` (a dataset on disk, via ``io.atomic_dir``).

The out-of-distribution clutter sets (``synthetic-clutter``, ``synthetic-clutter-targets``:
urban / road frames at sensor sizes, 8- and 16-bit, for the OOD check, never for training):
``clutter`` (config, presets, one frame, its targets), ``scene`` (a whole scene), ``structures``
(lamps, buildings, gantries, masts, vehicles, trees), ``draw`` (anti-aliased primitives),
``sensor`` (optics, detector artefacts, AGC / raw counts); ``writer.write_clutter_set``.
"""

from nairstd.data.synthetic.clutter import CLUTTER_PRESETS, ClutterConfig, clutter_frame
from nairstd.data.synthetic.generator import generate_image, generate_images, image_rng
from nairstd.data.synthetic.presets import (
    BACKGROUND_KINDS,
    GENERATOR_VERSION,
    PRESETS,
    SyntheticConfig,
    SyntheticPreset,
    preset,
)
from nairstd.data.synthetic.writer import (
    dataset_is_complete,
    split_stems,
    write_clutter_set,
    write_dataset,
)
from nairstd.profiles import PROFILES

__all__ = [
    "BACKGROUND_KINDS",
    "CLUTTER_PRESETS",
    "GENERATOR_VERSION",
    "PRESETS",
    "PROFILES",
    "ClutterConfig",
    "SyntheticConfig",
    "SyntheticPreset",
    "clutter_frame",
    "dataset_is_complete",
    "generate_image",
    "generate_images",
    "image_rng",
    "preset",
    "split_stems",
    "write_clutter_set",
    "write_dataset",
]
