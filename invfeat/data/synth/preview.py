"""A contact sheet of a synthetic domain: identities across its cameras, attributes underneath."""

from __future__ import annotations

import pathlib

import cv2
import numpy as np

from invfeat.data.attributes import Attribute
from invfeat.data.synth.protocol import Shot, SynthConfig, identities, render_shot
from invfeat.data.synth.world import domain
from invfeat.files import write_atomic

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def describe(values: np.ndarray, attributes: tuple[Attribute, ...]) -> str:
    """Readable summary of one attribute row: labels, carried items, colours."""
    words, colours = [], {"up": [], "down": []}
    for a, v in zip(attributes, values, strict=True):
        if v < 0:
            continue
        group = next((g for g in colours if a.name.startswith(g) and len(a.name) > len(g)), None)
        if a.labels == ("no", "yes"):
            if v == 1 and group is not None:
                colours[group].append(a.name[len(group) :])
            elif v == 1:
                words.append(a.name)
        elif " " in a.labels[v] or a.name in ("gender", "age", "clothes", "lower"):
            words.append(a.labels[v])
        else:
            words.append(f"{a.name} {a.labels[v]}")
    words += [f"{g}: {'+'.join(c) if c else 'other'}" for g, c in colours.items()]
    return ", ".join(words)


def _wrap(text: str, width_px: int, scale: float) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        trial = f"{line} {word}".strip()
        if line and cv2.getTextSize(trial, _FONT, scale, 1)[0][0] > width_px:
            lines.append(line)
            trial = word
        line = trial
    return lines + [line]


def write_contact_sheet(
    dataset: str,
    out: pathlib.Path,
    *,
    num_identities: int = 6,
    num_cameras: int = 6,
    size: tuple[int, int] = (128, 64),
    zoom: int = 2,
    seed: int = 0,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes a PNG grid to `out` (atomically; an existing file is replaced only with
    `overwrite`, else FileExistsError): one row per test identity, one column per camera.

    Tiles are rendered at `size` (what a model sees) and enlarged `zoom` times, pixels kept sharp.
    """
    d = domain(dataset)
    config = SynthConfig(seed=seed, size=size)
    people = identities(dataset, "test", config)
    stride = max(1, len(people) // num_identities)
    people = people[::stride][:num_identities]
    cams = range(1, min(num_cameras, d.num_cameras) + 1)
    w = size[1] * zoom
    sheet_w = w * len(cams)
    scale = 0.42 if w >= 128 else 0.3
    line_h = int(cv2.getTextSize("Ag", _FONT, scale, 1)[0][1] * 1.9)
    rows = []
    for person in people:
        tiles = [
            cv2.resize(
                render_shot(dataset, Shot(person, cam, cam, ""), config, "gallery"),
                None,
                fx=zoom,
                fy=zoom,
                interpolation=cv2.INTER_NEAREST,
            )
            for cam in cams
        ]
        text = f"{person.identity:04d}: {describe(person.attributes, d.attributes)}"
        lines = _wrap(text, sheet_w - 8, scale)
        band = np.full((line_h * len(lines) + 6, sheet_w, 3), 255, np.uint8)
        for i, line in enumerate(lines):
            cv2.putText(band, line, (4, line_h * (i + 1)), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
        rows += [np.concatenate(tiles, axis=1), band]
    header = np.full((line_h + 8, sheet_w, 3), 230, np.uint8)
    title = f"{dataset}: test identities (rows) across cameras 1..{len(cams)} (columns)"
    cv2.putText(header, title, (4, line_h), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    sheet = np.concatenate([header, *rows], axis=0)
    out = pathlib.Path(out)
    ok, png = cv2.imencode(
        ".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]
    )
    if not ok:
        raise ValueError(f"could not encode the contact sheet {out}")
    write_atomic(out, lambda f: f.write(png.tobytes()), exclusive=not overwrite)
    return out
