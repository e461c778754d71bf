"""The study's report: `report.json`, `report.md` and its figures, written from a results dict.

The report reads results, never attack code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from invfeat.files import json_default, write_atomic, write_json

REQUIRED_KEYS = (
    "victim",
    "attributes",
    "reconstruction",
    "encrypted",
    "legitimate",
    "config",
    "timings",
)
RECONSTRUCTION_METRICS = ("cosine_distance", "rank1", "mAP", "psnr", "ssim")
# How an attacker may read a ciphertext float (`invfeat.attacks.ciphertext`), for the report's note.
CIPHERTEXT_READINGS = {
    "bits": "its 32 bits",
    "columns": "its 32 bits, with the vector's bit positions sorted by how many of its floats "
    "have a one there, which undoes most of a per-vector permutation",
    "bytes": "its 4 bytes",
    "popcount": "its count of one-bits, which no permutation of its bits changes, so no key hides it",
    "signed-log": "its value, squashed by sign(x) log(1 + |x|)",
}
CURVE_META_KEYS = frozenset({"step", "epoch", "time", "elapsed", "steps_per_s"})


def check_results(results: Mapping[str, Any]) -> None:
    """Raises ValueError naming every missing top-level block of a results dict."""
    missing = [key for key in REQUIRED_KEYS if key not in results]
    if missing:
        raise ValueError(f"results lack the block(s) {', '.join(missing)}")


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
    plaintext, then ciphertext as read by each encoding in `encrypted` (encoding -> block)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = attribute_rows(plain)
    names = [r[0] for r in rows]
    x = np.arange(len(rows))
    series = [("plaintext features", [r[1] for r in rows])]
    for encoding, block in encrypted.items():
        enc = {r[0]: r[1] for r in attribute_rows(block)}
        series.append((f"ciphertext read as {encoding}", [enc.get(n, math.nan) for n in names]))
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


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _cipher_means(encrypted: Mapping[str, Mapping[str, Any]]) -> str:
    """Mean balanced accuracy per ciphertext reading, strongest first: "<mean> % <reading>, ..."."""
    means = {e: block["mean"]["balanced_accuracy"] for e, block in encrypted.items()}
    return ", ".join(f"{_pct(v)} {e}" for e, v in sorted(means.items(), key=lambda kv: -kv[1]))


def headline_table(results: Mapping[str, Any]) -> str:
    """The study in one Markdown table: what the attacker gets from plaintext vs ciphertext."""
    plain_rec = results["reconstruction"]
    enc = results["encrypted"]
    lines = [
        "| measure | plaintext features | one-time-key ciphertext |",
        "| --- | --- | --- |",
        "| attributes: mean balanced accuracy (chance / majority) | "
        f"{_pct(results['attributes']['mean']['balanced_accuracy'])} "
        f"({_pct(results['attributes']['mean']['chance'])} / "
        f"{_pct(results['attributes']['mean']['majority'])}) | "
        f"{_cipher_means(enc['attributes'])} |",
    ]
    for method in ("autoencoder", "gan"):
        p, e = plain_rec[method], enc["reconstruction"][method]
        lines.append(
            f"| {method}: rank-1 / mAP of reconstructions | {_pct(p['rank1'])} / {_pct(p['mAP'])} | "
            f"{_pct(e['rank1'])} / {_pct(e['mAP'])} |"
        )
        lines.append(
            f"| {method}: cosine distance to the victim feature | {p['cosine_distance']:.3f} | "
            f"{e['cosine_distance']:.3f} |"
        )
    victim, legit = results["victim"], results["legitimate"]
    lines.append(
        f"| legitimate re-ID rank-1 / mAP (victim; after decryption) | "
        f"{_pct(victim['rank1'])} / {_pct(victim['mAP'])} | {_pct(legit['rank1'])} / {_pct(legit['mAP'])} |"
    )
    return "\n".join(lines)


def _attribute_table(plain: Mapping[str, Any], encrypted: Mapping[str, Mapping[str, Any]]) -> str:
    """Balanced accuracy per attribute: plaintext, then a column per ciphertext reading."""
    columns = [
        {name: bacc for name, bacc, _, _ in attribute_rows(block)}
        | {"**mean**": block["mean"]["balanced_accuracy"]}
        for block in encrypted.values()
    ]
    header = "".join(f" ciphertext, {encoding} |" for encoding in encrypted)
    lines = [
        f"| attribute | balanced accuracy |{header} majority | chance |",
        "| --- | --- |" + " --- |" * len(encrypted) + " --- | --- |",
    ]
    for name, bacc, majority, chance in attribute_rows(plain) + [
        ("**mean**", *(plain["mean"][k] for k in ("balanced_accuracy", "majority", "chance")))
    ]:
        cells = "".join(
            " - |" if column.get(name) is None else f" {column[name]:.3f} |" for column in columns
        )
        lines.append(f"| {name} | {bacc:.3f} |{cells} {majority:.3f} | {chance:.3f} |")
    return "\n".join(lines)


def _reconstruction_table(block: Mapping[str, Any]) -> str:
    lines = [
        "| method | " + " | ".join(RECONSTRUCTION_METRICS) + " |",
        "| --- |" + " --- |" * len(RECONSTRUCTION_METRICS),
    ]
    for method, values in block.items():
        cells = " | ".join(f"{values[m]:.4f}" for m in RECONSTRUCTION_METRICS)
        lines.append(f"| {method} | {cells} |")
    return "\n".join(lines)


def _notes(results: Mapping[str, Any]) -> list[str]:
    """What the headline's figures are measured against, and which of them are optimistic."""
    notes = []
    chance = results.get("chance", {}).get("rank1")
    if chance is not None:
        notes.append(
            f"Chance rank-1 of a reconstruction: {100 * chance:.3f} % (a random ranking of this "
            "gallery, same-identity-same-camera entries excluded, as in the evaluation)."
        )
    readings = [
        f"`{e}`, {CIPHERTEXT_READINGS.get(e, 'see invfeat.attacks.ciphertext')}"
        for e in results["encrypted"]["attributes"]
    ]
    notes.append(f"The attacker read each ciphertext float as: {'; '.join(readings)}.")
    if results.get("config", {}).get("attributes", {}).get("keep_best"):
        notes.append(
            "**Optimistic:** the attribute figures (plaintext and ciphertext) come from the "
            "epoch with the best mean balanced accuracy on the victims themselves, the split "
            "they are measured on, as the published code selects; a head that learns nothing "
            "is lifted slightly above chance by this choice."
        )
    return notes


def render_markdown(results: Mapping[str, Any], figures: Mapping[str, str]) -> str:
    """The report's Markdown; `figures` maps a caption to a path relative to the report."""
    perceptual = results.get("perceptual", {})
    sections = [
        f"# Study report: {results.get('name', 'unnamed')}",
        "## Headline",
        headline_table(results),
    ]
    sections += _notes(results)
    if perceptual and not perceptual.get("threat_model_allowed", True):
        sections.append(
            f"**Upper bound:** the GAN used the `{perceptual['name']}` perceptual network, "
            "gradients through the victim itself, which the paper's black-box threat model does not allow."
        )
    sections += [
        "## Attribute recognition",
        _attribute_table(results["attributes"], results["encrypted"]["attributes"]),
        "## Reconstruction, plaintext features",
        _reconstruction_table(results["reconstruction"]),
        "## Reconstruction, one-time-key ciphertext (read as "
        f"{results['encrypted']['reconstruction_encoding']})",
        _reconstruction_table(results["encrypted"]["reconstruction"]),
    ]
    sections += [f"## {caption}\n\n![{caption}]({rel})" for caption, rel in figures.items()]
    timings = results["timings"]
    sections += [
        "## Timings",
        "| stage | seconds |\n| --- | --- |\n"
        + "\n".join(f"| {stage} | {seconds:.1f} |" for stage, seconds in timings.items()),
        "## Configuration",
        "```json\n" + json.dumps(results["config"], indent=2, default=json_default) + "\n```",
    ]
    return "\n\n".join(sections) + "\n"


def write_report(
    results: Mapping[str, Any],
    run_dir: Path,
    *,
    grid_rows: Mapping[str, np.ndarray] | None = None,
    logs: Mapping[str, Path] | None = None,
) -> Path:
    """Writes report.json, report.md and the PNG figures into `run_dir`; returns report.md's path.

    `results` holds (see `REQUIRED_KEYS`):

    - `victim` {rank1, mAP}: the victim's own re-ID accuracy on the attack domain;
    - `attributes` {attribute name: {balanced_accuracy, majority, chance}, ..., "mean": {...}};
    - `reconstruction` {autoencoder, gan: each {cosine_distance, rank1, mAP, psnr, ssim}};
    - `encrypted`: the same attacks on one-time-key ciphertext: `attributes` {encoding: a block
      like `attributes`} for each way the attacker read the ciphertext floats,
      `reconstruction`, and `reconstruction_encoding` (the reading the reconstructions used);
    - `legitimate` {rank1, mAP}: re-ID after decryption (equal to the plaintext figures);
    - `config` and `timings` {stage: seconds}; optionally `perceptual` {name,
      threat_model_allowed} and `chance` {rank1}: the expected rank-1 of a random ranking of
      the same query and gallery.
    """
    check_results(results)
    run_dir = Path(run_dir)
    figures: dict[str, str] = {}
    attribute_chart(
        results["attributes"], results["encrypted"]["attributes"], run_dir / "attributes.png"
    )
    figures["Balanced accuracy per attribute"] = "attributes.png"
    if grid_rows:
        image_grid(grid_rows, run_dir / "reconstructions.png")
        figures["Real images and their reconstructions"] = "reconstructions.png"
    if logs:
        training_curves(logs, run_dir / "curves.png")
        figures["Training curves"] = "curves.png"
    write_json(results, run_dir / "report.json")
    report = run_dir / "report.md"
    write_atomic(report, lambda f: f.write(render_markdown(results, figures).encode()))
    return report
