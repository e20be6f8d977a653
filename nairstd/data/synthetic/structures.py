"""The standing structures of the clutter scenes, in world units seen through a level camera.

Users' false targets on real target-free frames sit on the bright ends of larger structures
against a dark sky: street-lamp heads atop their poles, the corners and roof line of buildings,
the tops of sign gantries and masts, and far vehicles and lamps. Each function here draws one such
structure at its place (x metres across, z metres ahead, on flat ground) onto a `Canvas`, with
the temperatures such things have at night in the long-wave infrared: lamp housings, engines,
exhausts, roof-top plant and beacons hot; facades, poles and signs near the air temperature;
roofs and glass colder (they see the cold sky). Sizes are metres, so the pixel size of every part
follows from the camera (a lamp head 0.6 m long is 5 px at 300 m through a 2600 px focal length,
a dot at 2 km), and the far ones become the few-pixel bright points the detector confuses with
targets without any being drawn as a point on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nairstd.data.synthetic.draw import Canvas

KINDS = (
    "sky",
    "terrain",
    "tree",
    "road",
    "marking",
    "building",
    "window",
    "roof",
    "roof_unit",
    "pole",
    "lamp",
    "gantry",
    "sign",
    "mast",
    "beacon",
    "vehicle",
    "engine",
    "wire",
    "far_light",
    "hot_pixel",
    "dead_pixel",
)
KIND = {name: i for i, name in enumerate(KINDS)}


@dataclass(frozen=True)
class Camera:
    """A pinhole camera `height` m above flat ground, looking level (no roll): the horizon is a
    row, a point (x, y, z) (across, up, ahead; metres) lands on row `horizon + f (height - y) / z`
    and column `cx + f x / z`."""

    h: int
    w: int
    f: float  # focal length, px
    horizon: float  # row of the horizon
    height: float  # metres above the ground
    cx: float  # column of the optical axis

    def row(self, z: float, y: float = 0.0) -> float:
        return self.horizon + self.f * (self.height - y) / z

    def col(self, x: float, z: float) -> float:
        return self.cx + self.f * x / z

    def px(self, size: float, z: float) -> float:
        return self.f * size / z

    def in_view(self, x: float, z: float, half_width: float = 0.0) -> bool:
        """Whether something at (x, z) with that half-width (metres) can reach the frame."""
        c, r = self.col(x, z), self.px(half_width, z)
        return z > 0.5 and c + r > -2 and c - r < self.w + 2


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


# --------------------------------------------------------------------------------------------------
# Buildings
# --------------------------------------------------------------------------------------------------
def _windows_front(cv, cam, rng, x0, x1, z, height, t_win) -> None:
    if cam.px(1.4, z) < 1.2:
        return  # windows under a pixel: the facade texture stands in for them
    floors = int(height // 3.3)
    cols = int((x1 - x0 - 1.0) // 3.0)
    if floors * cols > 1500:
        return
    jitter = rng.uniform(-0.02, 0.02, size=(max(floors, 1), max(cols, 1)))
    for i in range(floors):
        y = 1.0 + i * 3.3
        for j in range(cols):
            x = x0 + 1.5 + j * 3.0
            r0, r1 = cam.row(z, y + 1.6), cam.row(z, y)
            cv.box(r0, r1, cam.col(x, z), cam.col(x + 1.4, z), t_win + jitter[i, j], KIND["window"])


def _windows_side(cv, cam, rng, xs, z0, z1, height, t_win) -> None:
    if cam.px(1.4, z1) < 1.2:
        return
    floors = int(height // 3.3)
    cols = int((z1 - z0 - 1.0) // 3.0)
    if floors * cols > 800:
        return
    for i in range(floors):
        y = 1.0 + i * 3.3
        for j in range(cols):
            za, zb = z0 + 1.5 + j * 3.0, z0 + 2.9 + j * 3.0
            ys = [cam.row(za, y), cam.row(za, y + 1.6), cam.row(zb, y + 1.6), cam.row(zb, y)]
            xs_ = [cam.col(xs, za), cam.col(xs, za), cam.col(xs, zb), cam.col(xs, zb)]
            cv.polygon(ys, xs_, t_win + _u(rng, -0.02, 0.02), KIND["window"])


def _roof_box(cv, cam, x, z, y, w, h, value, kind) -> None:
    """A box standing on the roof (at height y) whose front is at depth z."""
    cv.box(
        cam.row(z, y + h), cam.row(z, y), cam.col(x - w / 2, z), cam.col(x + w / 2, z), value, kind
    )


def building(
    cv: Canvas,
    cam: Camera,
    rng: np.random.Generator,
    x0: float,
    x1: float,
    z0: float,
    depth: float,
    height: float,
    ambient: float,
    texture: np.ndarray,
    night: bool = True,
) -> None:
    """A block x0..x1 across, z0..z0 + depth ahead, `height` m tall: the side facing the camera's
    axis in perspective, the front face, windows, a parapet warmer than the facade (the roof line
    loses heat at its edge and its metal flashing), and roof-top plant: units on the corners, HVAC
    boxes, exhaust stacks with hot caps and antennas, of which only what rises above the roof line
    shows from below."""
    z1 = z0 + depth
    t_face = ambient + _u(rng, -0.04, 0.14)
    t_side = t_face + _u(rng, -0.08, 0.04)
    t_edge = t_face + _u(rng, 0.04, 0.3)
    t_win = t_face + _u(rng, -0.12, 0.04)
    amp = _u(rng, 0.005, 0.03)
    parapet = _u(rng, 0.3, 1.0)

    def face(r, c):
        return t_face + amp * texture[r, c]

    def side_face(r, c):
        return t_side + amp * texture[r, c]

    side_x = x0 if x0 > 0 else x1 if x1 < 0 else None
    if side_x is not None:
        ys = [cam.row(z0, 0), cam.row(z0, height), cam.row(z1, height), cam.row(z1, 0)]
        xs = [cam.col(side_x, z0), cam.col(side_x, z0), cam.col(side_x, z1), cam.col(side_x, z1)]
        cv.polygon(ys, xs, side_face, KIND["building"])
        _windows_side(cv, cam, rng, side_x, z0, z1, height, t_win)
        top = height + parapet
        ys = [cam.row(z0, height), cam.row(z0, top), cam.row(z1, top), cam.row(z1, height)]
        cv.polygon(ys, xs, t_edge, KIND["roof"])
    if height < cam.height:  # seen from above: the roof, cold under the night sky, hot in the sun
        ys = [cam.row(z0, height), cam.row(z0, height), cam.row(z1, height), cam.row(z1, height)]
        xs = [cam.col(x0, z0), cam.col(x1, z0), cam.col(x1, z1), cam.col(x0, z1)]
        t_roof = ambient + (_u(rng, -0.15, 0.0) if night else _u(rng, 0.05, 0.3))
        cv.polygon(ys, xs, t_roof, KIND["roof"])
    # Roof-top plant, far to near (the front face drawn next hides what does not rise above it).
    items = []
    for kind, mean in (("unit", 1.0), ("stack", 0.3), ("antenna", 0.4)):
        for _ in range(int(rng.poisson(mean))):
            items.append((kind, _u(rng, x0 + 1, x1 - 1), z0 + _u(rng, 1, max(1.5, depth - 1))))
    for kind, x, z in sorted(items, key=lambda item: -item[2]):
        if kind == "unit":
            w, h = _u(rng, 1.0, 3.5), _u(rng, 0.8, 2.2)
            _roof_box(cv, cam, x, z, height, w, h, t_face + _u(rng, -0.05, 0.15), KIND["roof_unit"])
            if rng.random() < 0.4:  # a running fan: its warm exhaust on top
                fan = ambient + _u(rng, 0.1, 0.6)
                _roof_box(cv, cam, x, z, height + h, w * 0.4, 0.2, fan, KIND["roof_unit"])
        elif kind == "stack":
            w, h = _u(rng, 0.3, 0.8), _u(rng, 1.0, 5.0)
            _roof_box(cv, cam, x, z, height, w, h, t_face + _u(rng, 0.0, 0.2), KIND["roof_unit"])
            _roof_box(
                cv,
                cam,
                x,
                z,
                height + h,
                w * 1.2,
                0.4,
                ambient + _u(rng, 0.15, 0.8),
                KIND["roof_unit"],
            )
        else:
            h = _u(rng, 2.0, 8.0)
            top = (cam.row(z, height + h), cam.col(x, z))
            cv.segment(top, (cam.row(z, height), cam.col(x, z)), cam.px(0.08, z), t_face, 0)
            cv.ellipse(
                *top, cam.px(0.15, z), cam.px(0.15, z), ambient + _u(rng, 0.0, 0.5), KIND["mast"]
            )
    cv.box(
        cam.row(z0, height),
        cam.row(z0, 0),
        cam.col(x0, z0),
        cam.col(x1, z0),
        face,
        KIND["building"],
    )
    _windows_front(cv, cam, rng, x0, x1, z0, height, t_win)
    cv.box(
        cam.row(z0, height + parapet),
        cam.row(z0, height),
        cam.col(x0, z0),
        cam.col(x1, z0),
        t_edge,
        KIND["roof"],
    )
    # Plant on the front corners of the roof (and the far corner of the visible side).
    corners = [(x0 + 0.6, z0), (x1 - 0.6, z0)]
    if side_x is not None:
        corners.append((side_x + (0.6 if side_x == x0 else -0.6), z1))
    for x, z in corners:
        if rng.random() < 0.25:
            w, h = _u(rng, 0.6, 1.6), _u(rng, 0.4, 1.4)
            t = t_face + _u(rng, 0.05, 0.5)
            _roof_box(cv, cam, x, z, height + parapet, w, h, t, KIND["roof_unit"])


# --------------------------------------------------------------------------------------------------
# Street furniture
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LampStyle:
    """One road's lamps (a road has one model of lamp): sizes in metres, temperatures."""

    pole_height: float
    pole_width: float
    arm: float  # metres of arm towards the road (0: the head sits on the pole, a globe)
    head_length: float
    head_height: float
    t_pole: float
    t_head: float
    twin: bool  # two arms (a lamp on the median)

    @staticmethod
    def draw(rng: np.random.Generator, ambient: float, urban: bool, lit: bool) -> LampStyle:
        """A road's lamps; by day (`lit` False) the housings are only sun-warmed."""
        globe = urban and rng.random() < 0.4
        return LampStyle(
            pole_height=_u(rng, 3.5, 5.5) if globe else _u(rng, 7.0, 13.0),
            pole_width=_u(rng, 0.12, 0.3),
            arm=0.0 if globe else _u(rng, 0.4, 2.5),
            head_length=_u(rng, 0.35, 0.6) if globe else _u(rng, 0.45, 0.9),
            head_height=_u(rng, 0.35, 0.6) if globe else _u(rng, 0.15, 0.35),
            t_pole=ambient + _u(rng, -0.06, 0.1),
            t_head=ambient + (_u(rng, 0.1, 0.7) if lit else _u(rng, -0.02, 0.15)),
            twin=(not globe) and rng.random() < 0.25,
        )


def street_lamp(
    cv: Canvas,
    cam: Camera,
    rng: np.random.Generator,
    x: float,
    z: float,
    towards: float,
    style: LampStyle,
) -> None:
    """A lamp post at (x, z), its arm reaching `towards` (+1 right, -1 left) the road, the
    housing hot (one lamp in ten is off: only a little warmer than the pole)."""
    c = cam.col(x, z)
    top = cam.row(z, style.pole_height)
    half = max(cam.px(style.pole_width, z), 0.05) / 2
    cv.box(top, cam.row(z, 0), c - half, c + half, style.t_pole, KIND["pole"])
    t_head = style.t_head + _u(rng, -0.1, 0.1)
    if rng.random() < 0.1:
        t_head = style.t_pole + _u(rng, 0.02, 0.15)
    for side in (towards, -towards) if style.twin else (towards,):
        end = cam.col(x + side * style.arm, z)
        if style.arm:
            rise = cam.row(z, style.pole_height + 0.25)
            cv.segment((top, c), (rise, end), cam.px(0.08, z), style.t_pole, KIND["pole"])
        cy = cam.row(z, style.pole_height + 0.2 - style.head_height / 2)
        cv.ellipse(
            cy,
            end,
            cam.px(style.head_height / 2, z),
            cam.px(style.head_length / 2, z),
            t_head,
            KIND["lamp"],
        )


def gantry(
    cv: Canvas,
    cam: Camera,
    rng: np.random.Generator,
    xl: float,
    xr: float,
    z: float,
    ambient: float,
) -> None:
    """A sign gantry over the road from xl to xr: two posts with caps, a truss beam, sign panels
    (colder than the air: they see the sky) and the hot lamps that light them."""
    height = _u(rng, 5.5, 7.5)
    beam = _u(rng, 0.8, 1.6)
    t_steel = ambient + _u(rng, -0.05, 0.08)
    post = cam.px(_u(rng, 0.35, 0.6), z) / 2
    for x in (xl, xr):
        c = cam.col(x, z)
        cv.box(
            cam.row(z, height + beam), cam.row(z, 0), c - post, c + post, t_steel, KIND["gantry"]
        )
        cap = ambient + _u(rng, 0.05, 0.5)
        cv.box(
            cam.row(z, height + beam + 0.35),
            cam.row(z, height + beam),
            c - post * 1.3,
            c + post * 1.3,
            cap,
            KIND["gantry"],
        )
    r0, r1 = cam.row(z, height + beam), cam.row(z, height)
    c0, c1 = cam.col(xl, z), cam.col(xr, z)
    chord = max(cam.px(0.15, z), 0.3)
    cv.box(r0, r0 + chord, c0, c1, t_steel, KIND["gantry"])
    cv.box(r1 - chord, r1, c0, c1, t_steel, KIND["gantry"])
    step = cam.px(beam, z)
    if step > 3:  # the truss's diagonals when they are resolved
        n = int((c1 - c0) / step)
        for i in range(n):
            a, b = c0 + i * step, c0 + (i + 1) * step
            cv.segment((r0, a), (r1, b), chord, t_steel, KIND["gantry"])
    else:
        cv.box(r0, r1, c0, c1, t_steel, KIND["gantry"], alpha=0.4)
    lights = rng.random() < 0.6
    x = xl + _u(rng, 0.5, 2.0)
    while x < xr - 3.0:
        width = _u(rng, 3.0, 6.0)
        if x + width > xr - 0.5:
            break
        tall = _u(rng, 1.5, 3.0)
        t_sign = ambient + _u(rng, -0.12, 0.04)
        base = height + beam / 2 - tall / 2 - _u(rng, 0.0, 0.6)
        cv.box(
            cam.row(z, base + tall),
            cam.row(z, base),
            cam.col(x, z),
            cam.col(x + width, z),
            t_sign,
            KIND["sign"],
        )
        if lights:
            t_light = ambient + _u(rng, 0.2, 0.8)
            for k in range(int(rng.integers(2, 4))):
                lx = x + (k + 0.5) * width / 3
                _roof_box(cv, cam, lx, z, base - 0.5, 0.5, 0.25, t_light, KIND["lamp"])
        x += width + _u(rng, 0.5, 4.0)


def mast(
    cv: Canvas,
    cam: Camera,
    rng: np.random.Generator,
    x: float,
    z: float,
    ambient: float,
) -> None:
    """A lattice (or tubular) mast: a tapered, see-through shaft, antenna panels and a platform
    near the top, a whip and, on most, a hot obstruction beacon at the tip."""
    height = float(np.exp(rng.uniform(np.log(18.0), np.log(120.0))))
    base, top_w = _u(rng, 1.2, 4.0), _u(rng, 0.3, 1.0)
    t = ambient + _u(rng, -0.06, 0.08)
    lattice = rng.random() < 0.6
    c = cam.col(x, z)
    rb, rt = cam.row(z, 0), cam.row(z, height)
    hb, ht = cam.px(base, z) / 2, cam.px(top_w, z) / 2
    cv.polygon(
        [rb, rt, rt, rb],
        [c - hb, c - ht, c + ht, c + hb],
        t,
        KIND["mast"],
        0.55 if lattice else 1.0,
    )
    leg = max(cam.px(0.12, z), 0.25)
    if lattice and hb > 3:
        cv.segment((rb, c - hb), (rt, c - ht), leg, t, KIND["mast"])
        cv.segment((rb, c + hb), (rt, c + ht), leg, t, KIND["mast"])
        n = int((rb - rt) / max(2 * hb, 4))
        for i in range(n):
            f0, f1 = i / n, (i + 1) / n
            ya, yb = rb + (rt - rb) * f0, rb + (rt - rb) * f1
            wa, wb = hb + (ht - hb) * f0, hb + (ht - hb) * f1
            sign = 1 if i % 2 else -1
            cv.segment((ya, c - sign * wa), (yb, c + sign * wb), leg * 0.7, t, KIND["mast"])
    for _ in range(int(rng.integers(0, 3))):  # platforms
        y = height * _u(rng, 0.5, 0.95)
        cv.box(
            cam.row(z, y + 0.3),
            cam.row(z, y),
            cam.col(x - top_w * 1.8, z),
            cam.col(x + top_w * 1.8, z),
            t,
            KIND["mast"],
        )
    t_panel = ambient + _u(rng, -0.02, 0.25)
    for _ in range(int(rng.integers(0, 7))):
        y = height * _u(rng, 0.8, 0.97)
        side = rng.choice([-1.0, 1.0])
        xa = x + side * (top_w / 2 + 0.2)
        cv.box(
            cam.row(z, y + 2.0),
            cam.row(z, y),
            cam.col(xa - 0.2, z),
            cam.col(xa + 0.2, z),
            t_panel,
            KIND["mast"],
        )
    whip = _u(rng, 0.0, 6.0)
    tip = cam.row(z, height + whip)
    if whip:
        cv.segment((rt, c), (tip, c), max(cam.px(0.08, z), 0.2), t, KIND["mast"])
    if rng.random() < 0.7:
        r = cam.px(_u(rng, 0.2, 0.45), z)
        cv.ellipse(tip, c, r, r, ambient + _u(rng, 0.2, 0.9), KIND["beacon"])


def vehicle(
    cv: Canvas,
    cam: Camera,
    rng: np.random.Generator,
    x: float,
    z: float,
    ambient: float,
) -> None:
    """A car or lorry seen from behind or ahead: body near the air temperature, the hot parts
    (exhaust, engine grille, lamps, tyres) bright; far away only those hot parts remain, as dots."""
    truck = rng.random() < 0.2
    width = _u(rng, 2.3, 2.6) if truck else _u(rng, 1.7, 2.0)
    height = _u(rng, 2.8, 4.0) if truck else _u(rng, 1.35, 1.7)
    t_body = ambient + _u(rng, -0.03, 0.12)
    c0, c1 = cam.col(x - width / 2, z), cam.col(x + width / 2, z)
    cv.box(cam.row(z, height), cam.row(z, 0.25), c0, c1, t_body, KIND["vehicle"])
    t_tyre = ambient + _u(rng, 0.05, 0.3)
    for side in (-1, 1):
        xt = x + side * (width / 2 - 0.3)
        _roof_box(cv, cam, xt, z, 0.0, 0.3, 0.6, t_tyre, KIND["vehicle"])
    hot = ambient + _u(rng, 0.2, 0.9)
    if rng.random() < 0.6:  # exhaust
        xe = x + rng.choice([-1.0, 1.0]) * width * 0.3
        r = cam.px(0.12, z)
        cv.ellipse(cam.row(z, 0.35), cam.col(xe, z), r, r * 1.3, hot, KIND["engine"])
    if rng.random() < 0.5:  # lamps or grille
        for side in (-1, 1):
            r = cam.px(0.13, z)
            cv.ellipse(
                cam.row(z, 0.75),
                cam.col(x + side * (width / 2 - 0.35), z),
                r,
                r * 1.5,
                hot * _u(rng, 0.7, 1.0),
                KIND["engine"],
            )


def treeline(
    cv: Canvas,
    cam: Camera,
    rng: np.random.Generator,
    z: float,
    ambient: float,
    texture: np.ndarray,
    gap: tuple[float, float] | None = None,
) -> None:
    """A belt of trees at depth z across the frame (but the `gap` columns, where a road runs
    through it): a rough crown line, foliage a little under the air temperature, leafy."""
    w = cam.w
    height = _u(rng, 6.0, 20.0)
    cols = np.arange(w)
    spec = (rng.standard_normal(w // 2 + 1) + 1j * rng.standard_normal(w // 2 + 1)) / np.maximum(
        np.arange(w // 2 + 1), 1
    ) ** _u(rng, 0.9, 1.4)
    rough = np.fft.irfft(spec, n=w)
    rough = (rough - rough.mean()) / (rough.std() + 1e-9)
    top = cam.row(z, height) + 0.15 * cam.px(height, z) * rough
    base = cam.row(z, 0)
    r0 = max(0, int(np.floor(top.min())))
    r1 = min(cam.h, int(np.ceil(base)) + 1)
    if r1 <= r0:
        return
    rows = np.arange(r0, r1)
    cover = np.clip(rows[:, None] + 0.5 - top[None, :] + 0.5, 0.0, 1.0)
    cover = np.minimum(cover, np.clip(base - rows[:, None] + 0.5, 0.0, 1.0))
    if gap is not None:
        cover *= 1.0 - np.clip(np.minimum(cols + 1.0, gap[1]) - np.maximum(cols, gap[0]), 0, 1)
    cover = cover.astype(np.float32)
    t = ambient + _u(rng, -0.1, 0.02)
    amp = _u(rng, 0.02, 0.07)

    def foliage(r, c):
        return t + amp * texture[r, c]

    cv.paint(rows, cols, cover, foliage, KIND["tree"])


def far_lights(cv: Canvas, cam: Camera, rng: np.random.Generator, n: int, ambient: float) -> None:
    """Lamps and windows of a town kilometres away: dots along the horizon."""
    for _ in range(n):
        z = float(np.exp(rng.uniform(np.log(1500.0), np.log(8000.0))))
        x = (rng.uniform(0, cam.w) - cam.cx) * z / cam.f
        y = _u(rng, 0.0, 25.0)
        r = cam.px(_u(rng, 0.4, 1.5), z)
        cv.ellipse(
            cam.row(z, y), cam.col(x, z), r, r, ambient + _u(rng, 0.15, 0.8), KIND["far_light"]
        )
