"""A pedestrian's geometry: its pose in the image, a canvas in person units, the proportions of
its body and the joints of its arms and legs as they walk.

Geometry is in person units: v runs from the top of the head (0) to the soles (1), u is horizontal
in the same unit, 0 at the body's axis.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from invfeat.data.synth.appearance import Appearance, Traits

VIEWS = ("front", "back", "side")
_SHIFT = 4  # fractional bits of OpenCV coordinates
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA
_HEAD_BY_AGE = (1.28, 1.1, 1.0, 1.0)


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
