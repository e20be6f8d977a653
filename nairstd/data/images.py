"""Reading infrared images and masks from any common format into one convention.

Images become float32 grey in [0, 1] whatever the file holds (8-bit L/RGB/RGBA/P, 16-bit I;16
PNG or TIFF); masks become bool. Errors name the file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")

# Largest image we decode (pixels): 100 MP holds any real sensor frame (8000x6000 = 48 MP) while a
# tiny "decompression bomb" file claiming 20000x20000 px is refused before its pixels are
# allocated. NAIRSTD_MAX_PIXELS overrides it. PIL's own limit is set to match, so its warning
# never fires for images we accept.
DEFAULT_MAX_PIXELS = 100_000_000


def max_pixels() -> int:
    env = os.environ.get("NAIRSTD_MAX_PIXELS", "").strip()
    if not env:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(env)
    except ValueError:
        raise ValueError(f"NAIRSTD_MAX_PIXELS={env!r}: not an integer") from None
    if value < 1:
        raise ValueError(f"NAIRSTD_MAX_PIXELS={env!r}: must be >= 1")
    return value


class DataError(Exception):
    """A dataset file is missing, unreadable or inconsistent; the message names the file."""


def _open(path: Path) -> Image.Image:
    limit = max_pixels()
    Image.MAX_IMAGE_PIXELS = limit
    try:
        image = Image.open(path)  # reads the header only
        w, h = image.size
        if w * h > limit:
            raise DataError(
                f"{path}: {w}x{h} px is over the {limit:,} pixel limit (a decompression bomb or "
                "a huge image; NAIRSTD_MAX_PIXELS raises the limit)"
            )
        image.load()
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found") from err
    except Image.DecompressionBombError as err:  # PIL's own check (over twice the limit)
        raise DataError(
            f"{path}: over the {limit:,} pixel limit, refused as a decompression bomb ({err})"
        ) from err
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read image ({err})") from err
    return image


def _to_array(image: Image.Image, path: Path) -> np.ndarray:
    """Pixel array with its full bit depth, one channel (colour converted to luma)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image, dtype=np.uint16)
    if image.mode in ("I", "F"):
        return np.asarray(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA"):
        # Alpha carries no infrared signal; drop it rather than composite onto a colour.
        image = image.convert("RGB" if image.mode == "RGBA" else "L")
    if image.mode not in ("L", "RGB"):
        try:
            image = image.convert("RGB")
        except ValueError as err:
            raise DataError(f"{path}: unsupported image mode {image.mode}") from err
    array = np.asarray(image)
    if array.ndim == 3:
        # ITU-R 601 luma, the same weights PIL's convert("L") uses, kept in float.
        array = array[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return array


def _full_scale(array: np.ndarray) -> float:
    if array.dtype == np.uint16:
        return 65535.0
    if array.dtype in (np.int32, np.float32, np.float64):
        peak = float(array.max()) if array.size else 1.0
        return 65535.0 if peak > 255.0 else 255.0 if peak > 1.0 else 1.0
    return 255.0


def _repair_non_finite(array: np.ndarray, path: Path) -> np.ndarray:
    """NaN -> the lowest finite value, +-inf -> the finite extremes, with a warning naming the
    file (one NaN would otherwise turn the whole standardised map into NaN, i.e. 0)."""
    bad = ~np.isfinite(array)
    n_bad = int(bad.sum())
    if not n_bad:
        return array
    finite = array[~bad]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    warnings.warn(
        f"{path}: {n_bad} NaN/inf pixel(s) replaced (NaN and -inf by {lo:g}, +inf by {hi:g})",
        stacklevel=3,
    )
    return np.nan_to_num(array, nan=lo, posinf=hi, neginf=lo)


def read_image(path: str | Path) -> np.ndarray:
    """Float32 grey image in [0, 1], shape (H, W).

    Unsigned data is divided by its full scale (255, 65535; float data in [0, 1] is kept).
    Data with negative values (signed integers, degrees Celsius) or beyond 16-bit range is
    scaled by its own range (min..max -> 0..1), never clipped. NaN/inf pixels are repaired with
    a warning. Operations run in place: an 8000x6000 frame costs one float32 copy.
    """
    path = Path(path)
    array = _to_array(_open(path), path)
    if array.dtype.kind == "f":
        array = _repair_non_finite(array, path)
    if array.dtype.kind in "fi" and array.size:
        lo, hi = float(array.min()), float(array.max())
        if lo < 0.0 or hi > 65535.0:
            image = array.astype(np.float32)
            image -= np.float32(lo)
            if hi > lo:
                image /= np.float32(hi - lo)
            return image
    image = array.astype(np.float32)
    image /= np.float32(_full_scale(array))
    return np.clip(image, 0.0, 1.0, out=image)


def read_mask(path: str | Path) -> np.ndarray:
    """Bool mask (H, W): pixels above half of full scale (>127 for 8-bit)."""
    path = Path(path)
    array = _to_array(_open(path), path)
    return array > 0.5 * _full_scale(array)


def mask_is_binary(path: str | Path) -> bool:
    """True when the mask file holds only 0 and one other value (e.g. {0, 255})."""
    path = Path(path)
    values = np.unique(_to_array(_open(path), path))
    return len(values) <= 2 and (values[0] == 0 or len(values) == 1)


def resize_mask_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to (H, W)."""
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(image.resize((shape[1], shape[0]), Image.NEAREST)) > 127


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float32 [0, 1] image to (H, W)."""
    resized = Image.fromarray(image.astype(np.float32), mode="F").resize(
        (shape[1], shape[0]), Image.BILINEAR
    )
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def standardize(image: np.ndarray | torch.Tensor, eps: float = 1e-6):  # noqa: F821
    """Per-image zero mean / unit variance: the network input for every bit depth.

    Infrared targets are defined by local contrast, and 16-bit sensors use a narrow slice of
    their range, so a per-image standardisation makes 8- and 16-bit inputs look alike.
    """
    mean = image.mean()
    std = image.std()
    return (image - mean) / (std + eps)
