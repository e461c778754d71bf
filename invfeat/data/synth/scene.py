"""Cameras and scenes: background, framing, occlusion and sensor effects around one pedestrian.

A `Camera` is fixed per (domain, camera index); `render_image` draws one crop through it.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from invfeat.data.synth.appearance import Appearance, Traits
from invfeat.data.synth.body import VIEWS, Pose
from invfeat.data.synth.person import draw_person

# Scene palettes per domain style: (walls, floors, fixtures), RGB.
_STYLES = {
    # campus in summer: pale buildings, grey paving, greenery
    "market": (
        [(196, 190, 176), (170, 176, 180), (210, 200, 180), (150, 150, 140), (120, 130, 110)],
        [(140, 140, 136), (120, 118, 112), (160, 150, 140), (96, 100, 96)],
        [(60, 110, 50), (80, 80, 80), (180, 60, 40), (40, 60, 110), (220, 220, 220)],
    ),
    # campus in winter: brick, dark paving, snow, bare trees
    "duke": (
        [(140, 90, 70), (110, 100, 95), (170, 160, 150), (90, 90, 96), (200, 200, 205)],
        [(90, 90, 92), (200, 200, 206), (70, 66, 62), (130, 126, 120)],
        [(60, 45, 35), (40, 40, 44), (230, 230, 235), (120, 40, 30), (90, 100, 80)],
    ),
    # indoor halls and outdoor streets, morning to evening
    "msmt": (
        [(220, 214, 196), (90, 96, 110), (184, 170, 150), (60, 60, 70), (230, 226, 220)],
        [(200, 190, 170), (60, 60, 64), (150, 140, 120), (110, 120, 130)],
        [(200, 180, 60), (30, 90, 140), (170, 40, 60), (240, 240, 240), (50, 50, 50)],
    ),
}


# Unit Gaussian sensor noise, fixed; each image reads a window of it at a random offset.
_NOISE = np.random.default_rng(0x5EED).standard_normal((640, 384, 3), dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class Camera:
    """One camera of a domain: its scene and its sensor."""

    index: int
    wall: tuple[int, int, int]
    floor: tuple[int, int, int]
    horizon: float  # fraction of the crop height where the floor starts
    fixtures: tuple[tuple[float, float, float, float, tuple[int, int, int]], ...]  # x0,y0,x1,y1
    gain: tuple[float, float, float]  # colour cast
    brightness: float
    contrast: float
    blur: float  # Gaussian sigma at 64 px width
    noise: float  # std in 0..255
    low_res: float  # 1: sharp; <1: down- then up-sampled by this factor
    views: tuple[float, float, float]  # P(front), P(back), P(side)
    occlusion: float  # probability of an occluder
    light_slope: float  # brightness change from the left edge to the right edge


def make_cameras(style: str, count: int, seed: int) -> tuple[Camera, ...]:
    """`count` cameras of a domain style ("market", "duke", "msmt"), fixed by `seed`."""
    if style not in _STYLES:
        raise ValueError(f"unknown scene style {style!r}; known: {sorted(_STYLES)}")
    walls, floors, fixtures = _STYLES[style]
    rng = np.random.default_rng([seed, count, sum(map(ord, style))])
    dark = 0.55 if style == "msmt" else 0.8
    cams = []
    for i in range(count):
        items = []
        for _ in range(int(rng.integers(3, 7))):
            x0 = float(rng.uniform(-0.2, 2.8))
            y0 = float(rng.uniform(-0.1, 0.6))
            items.append(
                (
                    x0,
                    y0,
                    x0 + float(rng.uniform(0.1, 0.8)),
                    y0 + float(rng.uniform(0.1, 0.5)),
                    _jitter(rng, fixtures[rng.integers(len(fixtures))], 25),
                )
            )
        cast = rng.normal(0.0, 0.04, 3) + (0.05 * np.array([1, 0, -1]) * rng.normal())
        views = rng.dirichlet([2.0, 2.0, 1.5])
        cams.append(
            Camera(
                index=i + 1,
                wall=_jitter(rng, walls[rng.integers(len(walls))], 20),
                floor=_jitter(rng, floors[rng.integers(len(floors))], 15),
                horizon=float(rng.uniform(0.55, 0.8)),
                fixtures=tuple(items),
                gain=tuple(float(v) for v in np.clip(1.0 + cast, 0.8, 1.2)),
                brightness=float(rng.uniform(dark, 1.15)),
                contrast=float(rng.uniform(0.8, 1.1)),
                blur=float(rng.uniform(0.0, 0.6)),
                noise=float(rng.uniform(3.0, 9.0)),
                low_res=float(rng.choice([1.0, 1.0, 0.75, 0.6])),
                views=tuple(float(v) for v in 0.15 + 0.55 * views),
                occlusion=float(rng.uniform(0.05, 0.25)),
                light_slope=float(rng.uniform(-0.3, 0.3)),
            )
        )
    return tuple(cams)


def _jitter(rng: np.random.Generator, rgb, amount: float) -> tuple[int, int, int]:
    rgb = np.array(rgb) * rng.uniform(0.85, 1.15) + rng.normal(0, amount * 0.3, 3)
    return tuple(int(v) for v in np.clip(rgb, 0, 255))


def _muted(rng: np.random.Generator, saturation: float = 0.4) -> tuple[int, int, int]:
    """A plausible object colour: a grey level pulled part-way towards a random hue."""
    grey = rng.uniform(30, 220)
    rgb = grey * (1 - saturation) + rng.integers(0, 256, 3) * saturation
    return tuple(int(v) for v in rgb)


def _background(cam: Camera, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """The camera's scene at a random offset, plus clutter of this moment."""
    img = np.empty((h, w, 3), np.uint8)
    horizon = int(h * (cam.horizon + rng.uniform(-0.05, 0.05)))
    ramp = np.linspace(0.85, 1.1, h, dtype=np.float32)[:, None]
    img[:horizon] = (np.array(cam.wall, np.float32) * ramp[:horizon]).clip(0, 255)[:, None]
    img[horizon:] = (np.array(cam.floor, np.float32) * ramp[horizon:]).clip(0, 255)[:, None]
    offset = rng.uniform(0.0, 2.0)
    for x0, y0, x1, y1, col in cam.fixtures:
        a = (int((x0 - offset) * w), int(y0 * h))
        b = (int((x1 - offset) * w), int(y1 * h))
        cv2.rectangle(img, a, b, col, -1)
    step = max(4, int(w * rng.uniform(0.15, 0.35)))
    for x in range(int(-offset * w) % step, w, step):  # paving seams
        cv2.line(
            img,
            (x, horizon),
            (int(x + (x - w / 2) * 0.6), h),
            tuple(int(v * 0.8) for v in cam.floor),
            1,
        )
    for _ in range(int(rng.integers(0, 4))):  # passers-by and objects in the distance
        col = _muted(rng)
        cx, cy = int(rng.uniform(0, w)), int(rng.uniform(0.2, 0.8) * h)
        ax, ay = int(w * rng.uniform(0.04, 0.14)), int(h * rng.uniform(0.05, 0.2))
        cv2.ellipse(img, (cx, cy), (ax, ay), 0, 0, 360, col, -1, cv2.LINE_AA)
    return img


def _occlude(img: np.ndarray, rng: np.random.Generator) -> None:
    """A car, railing or bench from below, or a passer-by or pole at a side."""
    h, w = img.shape[:2]
    col = _muted(rng, 0.5)
    kind = rng.integers(3)
    if kind == 0:
        y = int(h * rng.uniform(0.68, 0.85))
        cv2.rectangle(img, (0, y), (w, h), col, -1)
        cv2.line(img, (0, y), (w, y), tuple(int(v * 0.6) for v in col), max(1, h // 60))
    elif kind == 1:
        x = int(w * rng.uniform(0.7, 0.85))
        sign = rng.choice([-1, 1])
        x0, x1 = (x, w) if sign > 0 else (0, w - x)
        cv2.ellipse(
            img,
            ((x0 + x1) // 2, int(h * 0.6)),
            ((x1 - x0) // 2 + w // 12, int(h * 0.45)),
            0,
            0,
            360,
            col,
            -1,
            cv2.LINE_AA,
        )
        cv2.circle(img, ((x0 + x1) // 2, int(h * 0.12)), w // 8, (200, 160, 130), -1, cv2.LINE_AA)
    else:
        x = int(w * rng.uniform(0.05, 0.95))
        cv2.rectangle(img, (x - w // 16, 0), (x + w // 16, h), col, -1)


def render_image(
    app: Appearance,
    traits: Traits,
    cam: Camera,
    rng: np.random.Generator,
    size: tuple[int, int] = (128, 64),
) -> np.ndarray:
    """One crop [H, W, 3] RGB uint8 of the person seen by `cam`; all draws come from `rng`.

    The camera's scene with clutter, the person with pose, scale and crop jitter, maybe an
    occluder, then the sensor. The canvas is twice the output width and resized, for smooth edges.
    """
    out_h, out_w = size
    w = 2 * out_w
    h = 2 * w
    img = _background(cam, h, w, rng)
    view = VIEWS[rng.choice(3, p=np.array(cam.views) / sum(cam.views))]
    scale = traits.height * rng.uniform(0.94, 1.05)
    height = h * scale
    pose = Pose(
        view=view,
        facing=int(rng.choice([-1, 1])),
        phase=float(rng.uniform(0, 2 * np.pi)),
        cx=w * (0.5 + rng.uniform(-0.07, 0.07)),
        top=(h - height) * rng.uniform(0.2, 0.8),
        height=height,
    )
    feet = (int(pose.cx), min(h - 1, int(pose.top + 0.99 * height)))
    shadow = tuple(int(v * 0.6) for v in img[feet[1], feet[0]])
    cv2.ellipse(img, feet, (int(0.13 * height), int(0.022 * height)), 0, 0, 360, shadow, -1)
    draw_person(img, app, traits, pose)
    if rng.random() < cam.occlusion:
        _occlude(img, rng)
    img = cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return _sensor(img, cam, rng)


def _sensor(img: np.ndarray, cam: Camera, rng: np.random.Generator) -> np.ndarray:
    """Resolution loss, colour cast, exposure, noise, then the blur of optics and compression."""
    h, w = img.shape[:2]
    if cam.low_res < 1.0:
        small = (max(8, int(w * cam.low_res)), max(16, int(h * cam.low_res)))
        img = cv2.resize(cv2.resize(img, small, interpolation=cv2.INTER_AREA), (w, h))
    x = img.astype(np.float32)
    gain = np.array(cam.gain, np.float32) * (cam.brightness * rng.uniform(0.9, 1.1))
    offset = (1.0 - cam.contrast) * float(x.mean()) * gain
    x *= cam.contrast * gain
    x *= (1.0 + cam.light_slope * np.linspace(-0.5, 0.5, w, dtype=np.float32))[None, :, None]
    y0, x0 = rng.integers(0, _NOISE.shape[0] - h), rng.integers(0, _NOISE.shape[1] - w)
    x += offset + _NOISE[y0 : y0 + h, x0 : x0 + w] * cam.noise
    sigma = (0.3 + cam.blur + rng.uniform(0.0, 0.2)) * w / 64
    x = cv2.GaussianBlur(x, (0, 0), sigma)
    return np.clip(x, 0, 255).astype(np.uint8)
