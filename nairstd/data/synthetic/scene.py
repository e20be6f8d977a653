"""A whole clutter scene in radiance: sky, ground, a road, and the structures standing on it.

Three kinds of scene, the ones users' target-free frames come from:

| scene | what stands in it |
|---|---|
| `road` | a road to the horizon (lanes, lamps on one or both sides or the median, sign gantries, cars and lorries near and far), a tree belt, a far town's buildings, masts and lights |
| `urban` | a street between blocks (their street-side faces in perspective, windows, roof lines, roof-top plant), street lamps and globe lamps, a few vehicles, the skyline beyond |
| `skyline` | a town across open ground or water: many blocks kilometres away, masts with beacons, the town's lights on the horizon |

The sky is dark at the top and graded towards the horizon (the air near the ground is warmer),
with thin clouds in some frames. Everything else is drawn far to near by `structures`, whose
temperatures are relative to the air's; the sensor model (`sensor`) maps radiance to counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nairstd.data.synthetic.backgrounds import _powerlaw
from nairstd.data.synthetic.draw import Canvas
from nairstd.data.synthetic.structures import (
    KIND,
    Camera,
    LampStyle,
    building,
    far_lights,
    gantry,
    mast,
    street_lamp,
    treeline,
    vehicle,
)

SCENES = ("road", "urban", "skyline")
NIGHT = 0.65  # fraction of night frames (lamps lit, darker sky); by day lamps are off, roofs warm


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _logu(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _camera(rng: np.random.Generator, h: int, w: int, scene: str) -> Camera:
    """A camera watching the sky over a town or a road (what IRSTD sensors do): horizontal field
    of view 18-50 degrees, tilted up so the horizon lies in the lower half (a skyline: lower
    still), mounted 3-25 m up on a pole or a roof (a skyline: 10-60 m)."""
    fov = np.deg2rad(_u(rng, 18.0, 50.0))
    f = (w / 2) / np.tan(fov / 2)
    lo, hi = (0.55, 0.9) if scene == "skyline" else (0.45, 0.85)
    height = _u(rng, 10.0, 60.0) if scene == "skyline" else _u(rng, 3.0, 25.0)
    return Camera(h, w, float(f), h * _u(rng, lo, hi), height, w * _u(rng, 0.4, 0.6))


def _sky(rng: np.random.Generator, cam: Camera, top: float, horizon: float) -> np.ndarray:
    """Cold at the top, warming towards the horizon (graded), with thin clouds in some frames."""
    h, w = cam.h, cam.w
    rows = np.arange(h, dtype=np.float32)[:, None] + 0.5
    above = np.clip((cam.horizon - rows) / h, 0.0, None)
    sky = top + (horizon - top) * np.exp(-above / _u(rng, 0.06, 0.45))
    sky = np.broadcast_to(sky, (h, w)).astype(np.float32)
    if rng.random() < 0.35:
        field = _powerlaw(rng, (h, w), _u(rng, 3.0, 3.8), anisotropy=_u(rng, 1.5, 4.0))
        density = 0.5 * (1.0 + np.tanh((field - _u(rng, 0.0, 1.5)) * _u(rng, 1.0, 3.0)))
        sky = sky + np.float32(_u(rng, 0.02, 0.12)) * density.astype(np.float32)
    return sky


def _ground(
    rng: np.random.Generator, cam: Camera, sky: np.ndarray, ambient: float, water: bool
) -> None:
    """Flat terrain (or water, cold: it mirrors the sky) below the horizon, hazy near it."""
    h, w = cam.h, cam.w
    rows = np.arange(h, dtype=np.float32)[:, None] + 0.5
    below = rows - cam.horizon
    if water:
        t = float(sky[int(np.clip(cam.horizon - 2, 0, h - 1)), 0]) + _u(rng, -0.03, 0.02)
        tex = _powerlaw(rng, (h, w), _u(rng, 1.8, 2.4), anisotropy=_u(rng, 4.0, 8.0))
        ground = t + _u(rng, 0.005, 0.02) * tex
    else:
        tex = _powerlaw(rng, (h, w), _u(rng, 2.2, 2.8), anisotropy=_u(rng, 1.5, 3.0))
        ground = ambient + _u(rng, -0.05, 0.03) + _u(rng, 0.01, 0.04) * tex
    haze = np.exp(-np.clip(below, 0.0, None) / (0.03 * h))
    hz_sky = sky[int(np.clip(cam.horizon - 1, 0, h - 1)), :][None, :]
    ground = ground + (hz_sky - ground) * (0.5 * haze)
    cover = np.clip(below + 0.5, 0.0, 1.0)
    sky += cover * (ground.astype(np.float32) - sky)


def _road(
    rng: np.random.Generator,
    cv: Canvas,
    cam: Camera,
    centre: Callable[[np.ndarray], np.ndarray],
    half: float,
    ambient: float,
) -> None:
    """Asphalt (warm at night: it stored the day's heat) from the bottom to the horizon, with
    edge lines and dashed lane lines that thin out with distance."""
    h, w = cam.h, cam.w
    r0 = int(np.floor(cam.horizon)) + 1
    if r0 >= h:
        return
    rows = np.arange(r0, h)
    z = np.minimum(cam.f * cam.height / (rows + 0.5 - cam.horizon), 8000.0)
    cols = np.arange(w, dtype=np.float32)[None, :]
    xc = centre(z)

    def strip(x_left: np.ndarray, x_right: np.ndarray) -> np.ndarray:
        left = (cam.cx + cam.f * x_left / z)[:, None]
        right = (cam.cx + cam.f * x_right / z)[:, None]
        return np.clip(np.minimum(cols + 1, right) - np.maximum(cols, left), 0.0, 1.0)

    t_road = ambient + _u(rng, 0.0, 0.12)
    cv.paint(
        rows, np.arange(w), strip(xc - half, xc + half).astype(np.float32), t_road, KIND["road"]
    )
    t_mark = t_road + _u(rng, -0.07, 0.03)
    lane = 3.5
    n = int(half * 2 // lane)
    offsets = [-half + 0.3, half - 0.3] + [-half + k * lane for k in range(1, n)]
    for k, off in enumerate(offsets):
        cover = strip(xc + off - 0.075, xc + off + 0.075)
        if k >= 2:
            cover *= ((z % 12.0) < 3.0)[:, None]
        cv.paint(rows, np.arange(w), cover.astype(np.float32), t_mark, KIND["marking"])


def _far_x(rng: np.random.Generator, cam: Camera, z: float) -> float:
    """An x that puts something at depth z somewhere across the frame (a little beyond it)."""
    return (rng.uniform(-0.1, 1.1) * cam.w - cam.cx) * z / cam.f


def draw_scene(
    rng: np.random.Generator, h: int, w: int, weights: tuple[float, ...] | None = None
) -> tuple[Canvas, dict[str, Any]]:
    """The radiance (and kind) canvas of one scene of (h, w) px and what it holds."""
    p = None if weights is None else np.asarray(weights, float) / np.sum(weights)
    scene = str(rng.choice(SCENES, p=p))
    cam = _camera(rng, h, w, scene)
    ambient = _u(rng, 0.35, 0.5)
    night = rng.random() < NIGHT
    sky_top = _u(rng, 0.0, 0.1) if night else _u(rng, 0.08, 0.22)
    sky_horizon = _u(rng, sky_top + 0.06, ambient - 0.02)
    texture = _powerlaw(rng, (h, w), _u(rng, 2.2, 2.8)).astype(np.float32)
    value = _sky(rng, cam, sky_top, sky_horizon)
    water = scene == "skyline" and rng.random() < 0.5
    _ground(rng, cam, value, ambient, water)
    cv = Canvas(value)
    cv.kind[int(np.clip(np.ceil(cam.horizon), 0, h)) :] = KIND["terrain"]
    objects: list[tuple[float, Callable[[], None]]] = []

    def add(z: float, fn: Callable[..., None], *args: Any) -> None:
        objects.append((z, lambda: fn(cv, cam, rng, *args)))

    counts: dict[str, int] = {}

    def count(name: str, n: int = 1) -> None:
        counts[name] = counts.get(name, 0) + n

    road = scene in ("road", "urban") or rng.random() < 0.3
    if road:
        x0 = _u(rng, -6.0, 6.0) if scene == "road" else _u(rng, -2.5, 2.5)
        curve = _u(rng, -1.5e-4, 1.5e-4)
        half = _u(rng, 3.5, 12.0) if scene == "road" else _u(rng, 3.0, 7.0)

        def centre(z: np.ndarray | float) -> np.ndarray | float:
            return x0 + curve * np.square(z)

        if not water:
            _road(rng, cv, cam, centre, half, ambient)
        style = LampStyle.draw(rng, ambient, urban=scene == "urban", lit=night)
        spacing = _u(rng, 30.0, 60.0)
        # A lit stretch (not every road has lamps) from 40 m ahead: 150-900 m of it.
        lit_road = rng.random() < 0.7
        far = _u(rng, 150.0, 900.0) if scene == "road" else _u(rng, 150.0, 600.0)
        lamp_far = far if lit_road else 0.0
        sides = [rng.choice([-1.0, 1.0])] if rng.random() < 0.35 else [-1.0, 1.0]
        median = scene == "road" and style.twin
        for side in [0.0] if median else sides:
            offset = side * (half + _u(rng, 0.5, 2.5))
            z = 40.0 + _u(rng, 0.0, spacing)
            while z < lamp_far:
                x = float(centre(z)) + offset
                if cam.in_view(x, z, style.arm + 1):
                    add(z, street_lamp, x, z, -side if side else 1.0, style)
                    count("lamp")
                z += spacing * _u(rng, 0.95, 1.05)
        if scene == "road":
            for _ in range(int(rng.integers(0, 3))):
                z = _u(rng, 60.0, 600.0)
                xl, xr = float(centre(z)) - half - 0.8, float(centre(z)) + half + 0.8
                if cam.in_view((xl + xr) / 2, z, half + 1):
                    add(z, gantry, xl, xr, z, ambient)
                    count("gantry")
        for _ in range(int(rng.poisson(5.0 if scene == "road" else 2.5))):
            z = _logu(rng, 40.0, 2500.0)
            x = float(centre(z)) + _u(rng, -half + 1.2, half - 1.2)
            if cam.in_view(x, z, 2):
                add(z, vehicle, x, z, ambient)
                count("vehicle")
        if scene == "urban":  # blocks along both sides of the street
            for side in (-1.0, 1.0):
                z = _u(rng, 20.0, 60.0)
                while z < far:
                    depth = _u(rng, 10.0, 50.0)
                    near_x = float(centre(z)) + side * (half + _u(rng, 2.5, 6.0))
                    width = _u(rng, 10.0, 30.0)
                    x0b, x1b = (near_x, near_x + width) if side > 0 else (near_x - width, near_x)
                    height = _logu(rng, 6.0, 70.0)
                    if cam.in_view((x0b + x1b) / 2, z, width / 2 + depth):
                        add(z, building, x0b, x1b, z, depth, height, ambient, texture, night)
                        count("building")
                    z += depth + _u(rng, 0.0, 15.0)
    n_far = {"road": (0, 15), "urban": (5, 30), "skyline": (15, 50)}[scene]
    for _ in range(int(rng.integers(*n_far))):
        z = _logu(rng, 400.0, 5000.0)
        width = _u(rng, 12.0, 70.0)
        x = _far_x(rng, cam, z)
        add(z, building, x - width / 2, x + width / 2, z, _u(rng, 10, 40), _logu(rng, 8, 150),
            ambient, texture, night)  # fmt: skip
        count("building")
    n_masts = int(rng.integers(1, 5)) if scene == "skyline" else int(rng.poisson(0.9))
    for _ in range(n_masts):
        z = _logu(rng, 150.0, 4000.0)
        add(z, mast, _far_x(rng, cam, z), z, ambient)
        count("mast")
    if rng.random() < {"road": 0.6, "urban": 0.2, "skyline": 0.4}[scene] and not water:
        z = _logu(rng, 300.0, 2500.0)
        gap = None  # where the road runs through the belt
        if road:
            gap = (cam.col(float(centre(z)) - half - 4, z), cam.col(float(centre(z)) + half + 4, z))
        add(z, treeline, z, ambient, texture, gap)
        count("treeline")
    if night and rng.random() < {"road": 0.5, "urban": 0.3, "skyline": 0.7}[scene]:
        n = int(rng.integers(3, 30))
        add(9000.0, far_lights, n, ambient)
        count("far_light", n)
    for _, draw in sorted(objects, key=lambda item: -item[0]):
        draw()
    info = {
        "scene": scene,
        "camera": {
            "fov_deg": round(float(np.rad2deg(2 * np.arctan(w / 2 / cam.f))), 2),
            "height_m": round(cam.height, 2),
            "horizon_row": round(cam.horizon, 1),
        },
        "night": night,
        "water": water,
        "structures": counts,
    }
    return cv, info
