"""What a pedestrian carries and what sits on its shoulders: backpack, shoulder bag and handbag;
neck, head, face or back of the head, hair, hat, glasses and scarf."""

from __future__ import annotations

from invfeat.data.synth.appearance import Traits
from invfeat.data.synth.body import _Body, _Canvas


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
