"""The study report's figures (PNG) and the views of its results that the figures and the
Markdown share: attribute rows, the security table's rows and each cell's strongest test."""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from invfeat.files import write_atomic

ATTACKS = (
    ("attributes", "attributes"),
    ("reconstruction", "reconstruction"),
    ("linkability", "linkability"),
    ("irreversibility", "irreversibility"),
    ("key_recovery", "key recovery"),
)
CURVE_META_KEYS = frozenset({"step", "epoch", "time", "elapsed", "steps_per_s"})


def attribute_rows(block: Mapping[str, Any]) -> list[tuple[str, float, float, float]]:
    """(name, balanced_accuracy, majority, chance) per attribute, the mean excluded."""
    return [
        (name, v["balanced_accuracy"], v["majority"], v["chance"])
        for name, v in block.items()
        if name != "mean"
    ]


def attribute_chart(
    plain: Mapping[str, Any], encrypted: Mapping[str, Mapping[str, Any]], path: Path
) -> Path:
    """Bar chart of balanced accuracy per attribute beside the chance and majority baselines:
    plaintext, then each block of `encrypted` (label -> block: a protection's reading)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = attribute_rows(plain)
    names = [r[0] for r in rows]
    x = np.arange(len(rows))
    series = [("plaintext features", [r[1] for r in rows])]
    for encoding, block in encrypted.items():
        enc = {r[0]: r[1] for r in attribute_rows(block)}
        series.append((encoding, [enc.get(n, math.nan) for n in names]))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(rows) + 2), 4))
    for k, (label, values) in enumerate(series):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=label)
    ax.scatter(x, [r[2] for r in rows], marker="_", s=200, color="black", label="majority class")
    ax.scatter(x, [r[3] for r in rows], marker="x", color="red", label="chance")
    ax.set_xticks(x, names, rotation=70, fontsize=8)
    ax.set_ylabel("balanced accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def image_grid(rows: Mapping[str, np.ndarray], path: Path, label_width: int = 110) -> Path:
    """Writes a PNG with one labelled row per entry; each value is [N, H, W, 3] float RGB in [0, 1]."""
    shapes = {v.shape[1:] for v in rows.values()}
    if len(shapes) != 1:
        raise ValueError(f"image grid rows differ in image shape: {sorted(shapes)}")
    strips = []
    for label, images_NHWC in rows.items():
        images = np.clip(np.asarray(images_NHWC, np.float32), 0.0, 1.0)
        strip = np.concatenate(list(images), axis=1)
        pad = np.ones((strip.shape[0], label_width, 3), np.float32)
        bgr = np.ascontiguousarray(
            (np.concatenate([pad, strip], axis=1) * 255).astype(np.uint8)[..., ::-1]
        )
        cv2.putText(bgr, label, (4, bgr.shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        strips.append(bgr)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", np.concatenate(strips, axis=0))
    if not ok:
        raise ValueError(f"could not encode the image grid for {path}")
    write_atomic(path, lambda f: f.write(encoded.tobytes()))
    return path


def read_curves(jsonl: Path) -> dict[str, tuple[list[float], list[float]]]:
    """Metric name -> (steps, values) from a metrics JSONL file; non-numeric entries are skipped."""
    curves: dict[str, tuple[list[float], list[float]]] = {}
    with jsonl.open() as f:
        for number, line in enumerate(f):
            if not line.strip():
                continue
            record = json.loads(line)
            step = record.get("step", number)
            for key, value in record.items():
                if key in CURVE_META_KEYS or not isinstance(value, int | float):
                    continue
                steps, values = curves.setdefault(key, ([], []))
                steps.append(float(step))
                values.append(float(value))
    return curves


def training_curves(logs: Mapping[str, Path], path: Path) -> Path:
    """One panel per training stage with every numeric metric of its JSONL log against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [(name, read_curves(p)) for name, p in logs.items() if p.exists()]
    fig, axes = plt.subplots(
        1, max(1, len(stages)), figsize=(4 * max(1, len(stages)), 3), squeeze=False
    )
    for ax, (name, curves) in zip(axes[0], stages, strict=False):
        for key, (steps, values) in curves.items():
            ax.plot(steps, values, label=key)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def strongest_test(cell: Mapping[str, Any]) -> Mapping[str, Any]:
    """The leaking test whose interval rises furthest above its chance; where none leaks, the
    one whose value does."""
    leaking = [t for t in cell["tests"] if t["leaks"]]
    if leaking:
        return max(leaking, key=lambda t: t["low"] - t["chance"])
    return max(cell["tests"], key=lambda t: t["value"] - t["chance"])


def format_figure(value: float, figure: str) -> str:
    return f"{value:.3f}" if "D_sys" in figure or "cosine" in figure else f"{100 * value:.1f} %"


def security_rows(results: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    return [("plaintext", results["reference"]), *results["protections"].items()]


def security_chart(results: Mapping[str, Any], path: Path) -> Path:
    """Protections against attacks as a grid: red where the cell leaks, green where it is at
    chance, each with its strongest figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = security_rows(results)
    fig, ax = plt.subplots(figsize=(2.6 * len(ATTACKS) + 1.5, 1.0 * len(rows) + 1.2))
    colours = {True: "#e8a0a0", False: "#a8d8a8", None: "#e0e0e0"}
    for r, (_, cells) in enumerate(rows):
        for c, (key, _) in enumerate(ATTACKS):
            cell = cells.get(key)
            ax.add_patch(
                plt.Rectangle((c, r), 1, 1, color=colours[None if cell is None else cell["leaks"]])
            )
            text = "-"
            if cell is not None:
                t = strongest_test(cell)
                verdict = "leaks" if cell["leaks"] else "at chance"
                value, chance = (format_figure(t[k], t["figure"]) for k in ("value", "chance"))
                name = textwrap.fill(t["figure"], 30)
                text = f"{verdict}\n{name}\n{value} (chance {chance})"
            ax.text(c + 0.5, r + 0.5, text, ha="center", va="center", fontsize=7)
    ax.set_xlim(0, len(ATTACKS))
    ax.set_ylim(len(rows), 0)
    ax.set_xticks(np.arange(len(ATTACKS)) + 0.5, [h for _, h in ATTACKS], fontsize=8)
    ax.set_yticks(np.arange(len(rows)) + 0.5, [name for name, _ in rows], fontsize=8)
    ax.tick_params(length=0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
