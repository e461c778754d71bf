"""Draws one pedestrian with OpenCV primitives, seen from the front, the back or the side.

Geometry is in person units: v runs from the top of the head (0) to the soles (1), u is horizontal
in the same unit, 0 at the body's axis.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from invfeat.data.synth.appearance import Appearance, Traits

VIEWS = ("front", "back", "side")
_SHIFT = 4  # fractional bits of OpenCV coordinates
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA
_HEAD_BY_AGE = (1.28, 1.1, 1.0, 1.0)
_HEIGHT_BY_AGE = (0.74, 0.92, 1.0, 0.95)


@dataclasses.dataclass(frozen=True)
class Pose:
    """Where and how the figure stands in one image."""

    view: str  # one of VIEWS
    facing: int  # +1 right, -1 left (side view; mirrors items in the others)
    phase: float  # walking phase in radians
    cx: float  # axis position, pixels
    top: float  # head top, pixels
    height: float  # adult person height in pixels (soles - head top)


class _Canvas:
    """Person-unit drawing on an RGB uint8 image."""

    def __init__(self, img: np.ndarray, pose: Pose, mirror: int) -> None:
        self.img, self.pose, self.mirror = img, pose, mirror
        self.hp = pose.height

    def pt(self, u: float, v: float) -> tuple[int, int]:
        x = self.pose.cx + self.mirror * u * self.hp
        return int(x * _ONE), int((self.pose.top + v * self.hp) * _ONE)

    def poly(self, pts: list[tuple[float, float]], col, img: np.ndarray | None = None) -> None:
        arr = np.array([self.pt(u, v) for u, v in pts], np.int32)
        cv2.fillPoly(self.img if img is None else img, [arr], col, _AA, _SHIFT)

    def limb(self, a, b, width: float, col, img: np.ndarray | None = None) -> None:
        w = max(1, int(round(width * self.hp)))
        cv2.line(self.img if img is None else img, self.pt(*a), self.pt(*b), col, w, _AA, _SHIFT)

    def ellipse(self, c, ax: float, ay: float, col, a0=0, a1=360, img=None, angle=0.0) -> None:
        axes = (max(1, int(ax * self.hp * _ONE)), max(1, int(ay * self.hp * _ONE)))
        if self.mirror < 0:
            a0, a1, angle = 180 - a1, 180 - a0, -angle
        target = self.img if img is None else img
        cv2.ellipse(target, self.pt(*c), axes, angle, a0, a1, col, -1, _AA, _SHIFT)


@dataclasses.dataclass(frozen=True)
class _Body:
    """Key heights (v) and half widths (u) of one figure, in person units."""

    r: float
    head_v: float
    head_u: float
    sy: float
    elbow: float
    wrist: float
    waist: float
    hip: float
    knee: float
    ankle: float
    sw: float
    ww: float
    hw: float
    arm: float
    leg: float


def _body(app: Appearance, tr: Traits, view: str) -> _Body:
    r = 0.062 * tr.head * _HEAD_BY_AGE[app.age]
    stoop = 0.03 if app.age == 3 else 0.0
    head_v = r + stoop
    head_u = 0.035 if (view == "side" and stoop) else 0.0  # +u is forward in side view
    sy = 2 * r + 0.045 + stoop * 0.5
    length = 1.0 - sy
    hip_f = tr.hip_fraction + (0.03 if app.age == 0 else 0.0)
    hip = sy + hip_f * length
    thin = 0.85 if app.age == 0 else 1.0
    sw = (0.1 if app.female else 0.118) * tr.width * thin
    return _Body(
        r=r,
        head_v=head_v,
        head_u=head_u,
        sy=sy,
        elbow=sy + 0.19 * length,
        wrist=sy + 0.36 * length,
        waist=sy + 0.3 * length,
        hip=hip,
        knee=hip + (0.965 - hip) * 0.48,
        ankle=0.965,
        sw=sw,
        ww=sw * (0.7 if app.female else 0.76),
        hw=sw * (0.98 if app.female else 0.8),
        arm=(0.036 if app.female else 0.043) * tr.width * thin,
        leg=(0.052 if app.female else 0.06) * tr.width * thin,
    )


def _pattern(shape, colours, texture: str, tex_rgb, period: int) -> np.ndarray:
    """A full-canvas fill of a garment: plain, the identity's texture, or bands of colours."""
    h, w = shape[:2]
    if len(colours) > 1:  # several annotated colours: bold horizontal bands of them
        palette = np.array(colours, np.uint8)
        rows = palette[(np.arange(h) // max(2, period)) % len(palette)]
        return np.repeat(rows[:, None, :], w, axis=1)
    base = np.array(colours[0], np.float32)
    shade = base * 0.6 if base.mean() > 110 else base + 60  # same colour class, other tone
    alt = 0.85 * shade + 0.15 * np.array(tex_rgb, np.float32)
    palette = np.stack([base, alt]).clip(0, 255).astype(np.uint8)
    step = max(1, period // 3)
    if texture == "hstripes":
        rows = palette[((np.arange(h) // step) % 3 == 0).astype(np.intp)]
        return np.repeat(rows[:, None, :], w, axis=1)
    if texture == "vstripes":
        cols = palette[((np.arange(w) // step) % 3 == 0).astype(np.intp)]
        return np.repeat(cols[None, :, :], h, axis=0)
    if texture == "check":
        on = (np.arange(h)[:, None] // period + np.arange(w)[None, :] // period) % 2
        return palette[on]
    raise ValueError(f"texture {texture!r} has no pattern")


def _garment(c: _Canvas, draw, colours, tr: Traits, period: int, textured: bool) -> None:
    """Draws a garment's shapes (`draw(target, colour)`) in its colour or its pattern.

    A pattern (stripes of several colours, the identity's texture) fills the shapes' mask, so
    colours stay flat and readable.
    """
    if len(colours) == 1 and not (textured and tr.texture in ("vstripes", "hstripes", "check")):
        draw(c.img, colours[0])
        return
    mask = np.zeros(c.img.shape[:2], np.uint8)
    draw(mask, 255)
    cv2.copyTo(_pattern(c.img.shape, colours, tr.texture, tr.texture_rgb, period), mask, c.img)


def draw_person(img: np.ndarray, app: Appearance, tr: Traits, pose: Pose) -> None:
    """Draws the pedestrian onto `img` (RGB uint8, modified in place)."""
    view, f = pose.view, pose.facing
    mirror = f if view == "side" else (1 if view == "front" else -1) * f
    scale = _HEIGHT_BY_AGE[app.age]
    top = pose.top + (1 - scale) * pose.height
    pose = dataclasses.replace(pose, top=top, height=pose.height * scale)
    c = _Canvas(img, pose, mirror)
    b = _body(app, tr, view)
    skin, hair, down0 = tr.skin, tr.hair, tr.down_rgb[0]
    s = math.sin(pose.phase)
    period = max(3, int(0.045 * c.hp))
    side = view == "side"

    # Behind the body: the backpack (side and front views), long hair (front view).
    arms = _arm_points(b, tr, s, side)
    legs = _leg_points(b, tr, s, side)
    if side and app.backpack:
        d = b.sw * 0.55
        c.poly(
            [(-d + 0.01, b.sy), (-d - 0.1, b.sy + 0.02), (-d - 0.1, b.waist), (-d, b.waist)],
            tr.bag_rgb,
        )
    if view == "front" and app.backpack:
        c.poly(
            [
                (-b.sw * 0.95, b.sy - 0.012),
                (b.sw * 0.95, b.sy - 0.012),
                (b.sw * 0.95, b.waist - 0.03),
                (-b.sw * 0.95, b.waist - 0.03),
            ],
            tr.bag_rgb,
        )
    if view == "front" and app.hair_long and tr.hair_style != 2:
        drop = b.sy + (0.05 if tr.hair_style == 0 else 0.12)
        c.poly(
            [
                (-b.r * 1.1, b.head_v),
                (b.r * 1.1, b.head_v),
                (b.r * 1.25, drop),
                (-b.r * 1.25, drop),
            ],
            hair,
        )

    # Legs, feet, lower garment.
    leg_skin = app.lower != "pants"
    for hipp, knee, ankle in legs:
        c.limb(hipp, knee, b.leg, skin if leg_skin else down0)
        c.limb(knee, ankle, b.leg * 0.85, skin if leg_skin else down0)
        toe = (ankle[0] + (0.055 if side else 0.0), 1.0 - 0.012)
        c.ellipse(((ankle[0] + toe[0]) / 2, 0.983), 0.05 if side else 0.036, 0.021, tr.shoe_rgb)

    def lower(target: np.ndarray, col) -> None:
        if side:
            hips = [
                (-b.sw * 0.5, b.waist),
                (b.sw * 0.55, b.waist),
                (b.sw * 0.6, b.hip + 0.02),
                (-b.sw * 0.55, b.hip + 0.02),
            ]
        else:
            hips = [(-b.ww, b.waist), (b.ww, b.waist), (b.hw, b.hip + 0.02), (-b.hw, b.hip + 0.02)]
        c.poly(hips, col, target)
        if app.lower == "pants":
            for hipp, knee, ankle in legs:
                c.limb(hipp, knee, b.leg * 1.08, col, target)
                c.limb(knee, ankle, b.leg * 0.95, col, target)
        elif app.lower == "shorts":
            for hipp, knee, _ in legs:
                c.limb(hipp, _lerp(hipp, knee, 0.8), b.leg * 1.1, col, target)
        else:
            hem = 0.88 if app.lower == "long_dress" else b.hip + 0.12
            flare = 1.55 if app.lower == "long_dress" else 1.35
            c.poly(
                [(-b.ww, b.waist), (b.ww, b.waist), (b.hw * flare, hem), (-b.hw * flare, hem)],
                col,
                target,
            )

    _garment(c, lower, tr.down_rgb, tr, period, textured=False)
    if app.boots:  # over trouser legs, with a cuff
        for _, knee, ankle in legs:
            top_ = _lerp(knee, ankle, 0.35)
            c.limb(top_, (ankle[0], ankle[1] + 0.01), b.leg * 1.2, tr.boot_rgb)
            c.limb(
                _lerp(top_, ankle, -0.05),
                _lerp(top_, ankle, 0.08),
                b.leg * 1.3,
                tuple(int(v * 0.7) for v in tr.boot_rgb),
            )

    # Upper garment: torso (long coat to the thighs) and sleeves, then skin of arms and hands.
    bottom = b.knee - 0.06 if app.coat_long else b.hip + 0.01
    bottom_w = b.hw * (1.18 if app.coat_long else 1.0)
    if side:  # back arm first, slightly shaded
        sh, el, wr = arms[0]
        back = tuple(int(v * 0.7) for v in tr.up_rgb[0])
        c.limb(sh, el, b.arm, back)
        c.limb(el, wr, b.arm * 0.9, skin if app.sleeve_short else back)
        c.ellipse(wr, b.arm * 0.55, b.arm * 0.6, skin)
    sleeve_end = 0.55 if app.sleeve_short else 1.0

    def upper(target: np.ndarray, col) -> None:
        if side:
            d = b.sw * 0.55
            c.poly(
                [(-d, b.sy), (d + 0.02, b.sy), (d * 0.95, bottom), (-d * 1.05, bottom)], col, target
            )
        else:
            for sx in (-1, 1):
                c.ellipse(
                    (sx * b.sw * 0.86, b.sy + 0.025), b.arm * 0.9, b.arm * 0.75, col, img=target
                )
            c.poly(
                [
                    (-b.sw, b.sy + 0.01),
                    (b.sw, b.sy + 0.01),
                    (b.ww, b.waist),
                    (bottom_w, bottom),
                    (-bottom_w, bottom),
                    (-b.ww, b.waist),
                ],
                col,
                target,
            )
        for k, (sh, el, wr) in enumerate(arms):
            if side and k == 0:
                continue
            c.limb(sh, el, b.arm * 1.12, col, target)
            if not app.sleeve_short:
                c.limb(el, _lerp(el, wr, 0.92), b.arm * 1.05, col, target)

    _garment(c, upper, tr.up_rgb, tr, period, textured=True)
    for k, (sh, el, wr) in enumerate(arms):
        if side and k == 0:
            continue
        if app.sleeve_short:
            c.limb(_lerp(sh, el, sleeve_end), el, b.arm * 0.9, skin)
            c.limb(el, wr, b.arm * 0.85, skin)
        c.ellipse(wr, b.arm * 0.6, b.arm * 0.68, skin)
    if tr.texture == "logo" and view == "front":
        c.ellipse((b.sw * 0.35, b.sy + 0.07), 0.028, 0.022, tr.texture_rgb)
    if tr.texture == "collar" and view != "back":
        c.poly([(-0.035, b.sy), (0.035, b.sy), (0.0, b.sy + 0.07)], tr.texture_rgb)

    _carried(c, app, tr, b, arms, view)
    _head(c, app, tr, b, view)
    if tr.accessory == "belt" and not app.coat_long:
        c.limb((-b.ww, b.waist + 0.03), (b.ww, b.waist + 0.03), 0.014, (30, 24, 20))
    if tr.accessory == "watch":
        c.ellipse(_lerp(arms[1][1], arms[1][2], 0.85), b.arm * 0.5, 0.01, tr.accessory_rgb)


def _lerp(a, b, t: float):
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


def _arm_points(b: _Body, tr: Traits, s: float, side: bool):
    """(shoulder, elbow, wrist) of the two arms; in side view arm 0 is the far one."""
    if side:
        sh = (0.0, b.sy + 0.025)
        out = []
        for sign in (1, -1):
            swing = sign * s * 0.09 * tr.arm_swing
            el = (swing * 0.5, b.elbow)
            out.append((sh, el, (swing * 1.2 + 0.02, b.wrist - abs(swing) * 0.3)))
        return out
    lift = abs(s) * 0.03 * tr.arm_swing
    out = []
    for sx in (-1, 1):
        sh = (sx * b.sw * 0.86, b.sy + 0.03)
        el = (sx * (b.sw + 0.012), b.elbow - lift * 0.5)
        out.append((sh, el, (sx * (b.sw + 0.02), b.wrist - lift)))
    return out


def _leg_points(b: _Body, tr: Traits, s: float, side: bool):
    """(hip, knee, ankle) of the two legs."""
    if side:
        out = []
        for sign in (1, -1):
            swing = sign * s * 0.12 * tr.stride
            knee = (swing * 0.5 + 0.015 * (sign * s > 0), b.knee)
            out.append(((0.0, b.hip), knee, (swing, b.ankle - 0.01 * abs(s))))
        return out
    spread = b.hw * 0.48
    out = []
    for sx, lift in ((-1, max(0.0, s)), (1, max(0.0, -s))):
        hipp = (sx * spread, b.hip)
        ankle = (sx * (spread + 0.01), b.ankle - lift * 0.025 * tr.stride)
        out.append((hipp, (sx * spread, b.knee), ankle))
    return out


def _carried(c: _Canvas, app, tr: Traits, b: _Body, arms, view: str) -> None:
    """Backpack (straps in front), shoulder bag, handbag."""
    bag = tr.bag_rgb
    dark = tuple(int(v * 0.6) for v in bag)
    if app.backpack and view == "front":
        for sx in (-1, 1):
            c.limb((sx * b.sw * 0.5, b.sy + 0.005), (sx * b.sw * 0.62, b.waist - 0.02), 0.022, dark)
    if app.backpack and view == "back":
        w = b.sw * 0.82
        c.poly(
            [
                (-w, b.sy + 0.02),
                (w, b.sy + 0.02),
                (w * 1.02, b.waist + 0.01),
                (-w * 1.02, b.waist + 0.01),
            ],
            bag,
        )
        c.poly(
            [
                (-w * 0.7, b.elbow),
                (w * 0.7, b.elbow),
                (w * 0.7, b.waist - 0.01),
                (-w * 0.7, b.waist - 0.01),
            ],
            dark,
        )
    if app.bag:
        if view == "side":
            c.limb((0.0, b.sy + 0.01), (0.05, b.hip - 0.04), 0.014, dark)
            c.poly(
                [
                    (0.0, b.hip - 0.05),
                    (0.1, b.hip - 0.05),
                    (0.1, b.hip + 0.07),
                    (0.0, b.hip + 0.07),
                ],
                bag,
            )
        else:
            c.limb((b.sw * 0.55, b.sy + 0.005), (-b.hw, b.hip - 0.04), 0.014, dark)
            x0 = -b.hw - 0.045
            c.poly(
                [
                    (x0 - 0.05, b.hip - 0.05),
                    (x0 + 0.06, b.hip - 0.05),
                    (x0 + 0.06, b.hip + 0.07),
                    (x0 - 0.05, b.hip + 0.07),
                ],
                bag,
            )
    if app.handbag:
        wr = arms[1][2]
        c.limb((wr[0], wr[1]), (wr[0], wr[1] + 0.03), 0.01, (40, 30, 25))
        c.poly(
            [
                (wr[0] - 0.055, wr[1] + 0.03),
                (wr[0] + 0.055, wr[1] + 0.03),
                (wr[0] + 0.065, wr[1] + 0.13),
                (wr[0] - 0.065, wr[1] + 0.13),
            ],
            tr.handbag_rgb,
        )


def _head(c: _Canvas, app, tr: Traits, b: _Body, view: str) -> None:
    """Neck, head, face or back of the head, hair, hat, glasses and scarf."""
    r, hv, hu = b.r, b.head_v, b.head_u
    skin, hair = tr.skin, tr.hair
    c.limb((hu * 0.5, hv + r * 0.6), (0.0, b.sy + 0.01), r * 0.75, skin)
    if tr.accessory == "scarf":
        c.limb((-r * 0.75, b.sy - 0.005), (r * 0.75, b.sy - 0.005), 0.03, tr.accessory_rgb)
        if view == "front":
            c.limb((r * 0.3, b.sy), (r * 0.4, b.sy + 0.09), 0.025, tr.accessory_rgb)
    c.ellipse((hu, hv), r * 0.9, r, skin)
    long_hair = app.hair_long
    if view == "front":
        c.ellipse((hu, hv - r * 0.05), r * 0.98, r * 0.8, hair, 180, 360)
        if tr.hair_style == 1:
            c.ellipse((hu - r * 0.45, hv - r * 0.25), r * 0.5, r * 0.35, hair)
        if long_hair and tr.hair_style != 2:
            for sx in (-1, 1):
                c.limb(
                    (hu + sx * r * 0.85, hv - r * 0.2),
                    (hu + sx * r * 1.0, hv + r * 1.3),
                    r * 0.35,
                    hair,
                )
        eye = (40, 30, 30)
        for sx in (-1, 1):
            c.ellipse((hu + sx * r * 0.35, hv + r * 0.12), r * 0.11, r * 0.09, eye)
        c.limb(
            (hu - r * 0.2, hv + r * 0.55), (hu + r * 0.2, hv + r * 0.55), r * 0.08, (150, 70, 70)
        )
        if tr.accessory == "glasses":
            for sx in (-1, 1):
                c.ellipse((hu + sx * r * 0.35, hv + r * 0.12), r * 0.24, r * 0.17, (20, 20, 20))
    elif view == "back":
        c.ellipse((hu, hv - r * 0.04), r * 0.98, r * 0.96, hair, 160, 380)
        c.ellipse((hu, hv - r * 0.1), r * 0.96, r * 0.85, hair)
        if long_hair:
            drop = b.sy + (0.13 if tr.hair_style == 1 else 0.07)
            if tr.hair_style == 2:  # ponytail
                c.limb((hu, hv + r * 0.2), (hu, b.sy + 0.08), r * 0.45, hair)
            else:
                c.poly(
                    [(hu - r * 0.95, hv), (hu + r * 0.95, hv), (r * 1.05, drop), (-r * 1.05, drop)],
                    hair,
                )
    else:
        c.ellipse((hu - r * 0.15, hv - r * 0.1), r * 0.85, r * 0.9, hair, 110, 360)
        c.ellipse((hu + r * 0.85, hv + r * 0.2), r * 0.18, r * 0.15, skin)
        c.ellipse((hu + r * 0.5, hv + r * 0.05), r * 0.1, r * 0.09, (40, 30, 30))
        if long_hair:
            drop = b.sy + (0.1 if tr.hair_style == 1 else 0.05)
            c.limb((hu - r * 0.55, hv), (hu - r * 0.7, drop), r * 0.6, hair)
        if tr.accessory == "glasses":
            c.limb((hu + r * 0.3, hv + r * 0.05), (hu + r * 0.7, hv + r * 0.05), r * 0.1, (20,) * 3)
    if app.hat:
        hat = tr.hat_rgb
        c.ellipse((hu, hv - r * 0.35), r * 1.06, r * 0.95, hat, 180, 360)
        c.limb((hu - r * 1.0, hv - r * 0.35), (hu + r * 1.0, hv - r * 0.35), r * 0.3, hat)
        if tr.hat_style == 0 and view != "back":  # cap: brim to the front
            if view == "side":
                c.limb((hu + r * 0.5, hv - r * 0.3), (hu + r * 1.5, hv - r * 0.22), r * 0.18, hat)
            else:
                c.ellipse((hu, hv - r * 0.28), r * 1.05, r * 0.22, hat)
