"""Draws one pedestrian with OpenCV primitives, seen from the front, the back or the side: the body
and its garments here, in the order they overlap; the geometry is in `body`, the head and what is
carried in `head_and_bags`.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from invfeat.data.synth.appearance import Appearance, Traits
from invfeat.data.synth.body import Pose, _arm_points, _body, _Canvas, _leg_points, _lerp
from invfeat.data.synth.head_and_bags import _carried, _head

_HEIGHT_BY_AGE = (0.74, 0.92, 1.0, 0.95)


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
