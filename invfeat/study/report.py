"""The study's report: `report.json`, `report.md` and its figures, written from a results dict.

The report reads results, never attack code.
"""

from __future__ import annotations

import json
import math
import textwrap
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
    "reference",
    "protections",
    "config",
    "timings",
)
# The security table's columns: (cell key, heading)
ATTACKS = (
    ("attributes", "attributes"),
    ("reconstruction", "reconstruction"),
    ("linkability", "linkability"),
    ("irreversibility", "irreversibility"),
    ("key_recovery", "key recovery"),
)
RECONSTRUCTION_METRICS = ("cosine_distance", "rank1", "mAP", "psnr", "ssim")
# How an attacker may read a ciphertext float (`invfeat.attacks.ciphertext`), for the report's note.
CIPHERTEXT_READINGS = {
    "estimate": "the attacker's estimate of the plaintext floats (invfeat.study.security)",
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


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _strongest_test(cell: Mapping[str, Any]) -> Mapping[str, Any]:
    """The leaking test whose interval rises furthest above its chance; where none leaks, the
    one whose value does."""
    leaking = [t for t in cell["tests"] if t["leaks"]]
    if leaking:
        return max(leaking, key=lambda t: t["low"] - t["chance"])
    return max(cell["tests"], key=lambda t: t["value"] - t["chance"])


def _figure(value: float, figure: str) -> str:
    return f"{value:.3f}" if "D_sys" in figure or "cosine" in figure else _pct(value)


def _cell_text(cell: Mapping[str, Any] | None) -> str:
    if cell is None:
        return "-"
    t = _strongest_test(cell)
    leaking = sum(test["leaks"] for test in cell["tests"])
    verdict = f"**leaks** ({leaking} of {len(cell['tests'])} tests)" if leaking else "at chance"
    interval = (
        f" [{_figure(t['low'], t['figure'])}, {_figure(t['high'], t['figure'])}]"
        if t["low"] != t["high"]
        else ""
    )
    return (
        f"{verdict}: {t['figure']} {_figure(t['value'], t['figure'])}{interval} "
        f"(chance {_figure(t['chance'], t['figure'])})"
    )


def _security_rows(results: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    return [("plaintext", results["reference"]), *results["protections"].items()]


def security_table(results: Mapping[str, Any]) -> str:
    """Protections (plaintext first) against attacks: each cell's verdict and strongest test."""
    lines = [
        "| protection | " + " | ".join(h for _, h in ATTACKS) + " | legitimate re-ID rank-1 |",
        "| --- |" + " --- |" * (len(ATTACKS) + 1),
    ]
    for name, cells in _security_rows(results):
        legit = cells.get("legitimate")
        legit_text = (
            f"{_pct(legit['rank1'])} (decrypted bit-exact)"
            if legit
            else f"{_pct(results['victim']['rank1'])}"
        )
        row = " | ".join(_cell_text(cells.get(key)) for key, _ in ATTACKS)
        lines.append(f"| {name} | {row} | {legit_text} |")
    return "\n".join(lines)


def security_chart(results: Mapping[str, Any], path: Path) -> Path:
    """Protections against attacks as a grid: red where the cell leaks, green where it is at
    chance, each with its strongest figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _security_rows(results)
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
                t = _strongest_test(cell)
                verdict = "leaks" if cell["leaks"] else "at chance"
                value, chance = (_figure(t[k], t["figure"]) for k in ("value", "chance"))
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


def headline_table(results: Mapping[str, Any]) -> str:
    """What the attacker gets from plaintext features (the reference)."""
    plain_rec, victim = results["reconstruction"], results["victim"]
    mean = results["attributes"]["mean"]
    lines = [
        "| measure | plaintext features |",
        "| --- | --- |",
        f"| victim re-ID rank-1 / mAP | {_pct(victim['rank1'])} / {_pct(victim['mAP'])} |",
        f"| attributes: mean balanced accuracy (chance / majority) | "
        f"{_pct(mean['balanced_accuracy'])} ({_pct(mean['chance'])} / {_pct(mean['majority'])}) |",
    ]
    for method, p in plain_rec.items():
        lines.append(
            f"| {method}: rank-1 / mAP of reconstructions | {_pct(p['rank1'])} / {_pct(p['mAP'])} |"
        )
        lines.append(
            f"| {method}: cosine distance to the victim feature | {p['cosine_distance']:.3f} |"
        )
    return "\n".join(lines)


def _attribute_table(columns: Mapping[str, Mapping[str, Any]]) -> str:
    """Balanced accuracy per attribute [interval] per column (a reading of some features)."""
    first = next(iter(columns.values()))
    names = [r[0] for r in attribute_rows(first)] + ["mean"]
    lines = [
        "| attribute | " + " | ".join(columns) + " | majority | chance |",
        "| --- |" + " --- |" * (len(columns) + 2),
    ]
    for name in names:
        cells = []
        for block in columns.values():
            v = block.get(name)
            bounds = f" [{v['low']:.3f}, {v['high']:.3f}]" if v and "low" in v else ""
            cells.append("-" if v is None else f"{v['balanced_accuracy']:.3f}{bounds}")
        label = "**mean**" if name == "mean" else name
        lines.append(
            f"| {label} | {' | '.join(cells)} | {first[name]['majority']:.3f} "
            f"| {first[name]['chance']:.3f} |"
        )
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


def _tests_table(cell: Mapping[str, Any]) -> str:
    """Every test of a cell: figure, value [interval], chance, verdict."""
    lines = [
        f"Tests at level {cell['level']:.4f} each:",
        "",
        "| figure | value [interval] | chance | leaks |",
        "| --- | --- | --- | --- |",
    ]
    for t in cell["tests"]:
        f = t["figure"]
        bounds = (
            f" [{_figure(t['low'], f)}, {_figure(t['high'], f)}]" if t["low"] != t["high"] else ""
        )
        lines.append(
            f"| {f} | {_figure(t['value'], f)}{bounds} | {_figure(t['chance'], f)} "
            f"| {'**yes**' if t['leaks'] else 'no'} |"
        )
    return "\n".join(lines)


def _protection_sections(name: str, cells: Mapping[str, Any]) -> list[str]:
    sections = [f"## {name}"]
    if "attributes" in cells:
        sections += [
            "### Attributes",
            _attribute_table(cells["attributes"]["readings"]),
        ]
    reconstruction = cells.get("reconstruction")
    if reconstruction is not None:
        read = reconstruction["reading"]
        sections += [
            f"### Reconstruction{f' (read as {read})' if read else ''}",
            _reconstruction_table(reconstruction["attacks"]),
            _tests_table(reconstruction),
        ]
    for key, heading in ATTACKS[2:]:
        if key in cells:
            sections += [f"### {heading.capitalize()}", _tests_table(cells[key])]
    legit = cells.get("legitimate")
    if legit:
        sections.append(
            f"Legitimate re-ID after decryption: rank-1 {_pct(legit['rank1'])}, mAP "
            f"{_pct(legit['mAP'])}, bit-exact: {legit['bit_exact']}."
        )
    return sections


def _notes(results: Mapping[str, Any]) -> list[str]:
    """What the figures are measured against, and which of them are optimistic."""
    notes = []
    chance = results.get("chance", {}).get("rank1")
    if chance is not None:
        notes.append(
            f"Chance rank-1: {100 * chance:.3f} % (a random ranking of this gallery, "
            "same-identity-same-camera entries excluded, as in the evaluation)."
        )
    readings = [
        f"`{r}`, {CIPHERTEXT_READINGS.get(r, 'see invfeat.attacks.ciphertext')}"
        for r in results.get("config", {}).get("readings", ())
    ]
    if readings:
        notes.append(f"The attacker read each ciphertext vector as: {'; '.join(readings)}.")
    notes.append(
        "A cell **leaks** when one of its tests' intervals lies wholly above chance. A "
        "protection's tests share a 1 % chance of a false alarm (Bonferroni over its attacks "
        "and their tests; each table gives its level); D_sys is tested against the mean of its "
        "label shuffles plus z of their standard deviations."
    )
    if results.get("config", {}).get("attributes", {}).get("keep_best"):
        notes.append(
            "**Optimistic:** the attribute figures come from the epoch with the best mean "
            "balanced accuracy on the victims themselves, the split they are measured on, as the "
            "published code selects; a head that learns nothing is lifted slightly above chance "
            "by this choice."
        )
    return notes


def render_markdown(results: Mapping[str, Any], figures: Mapping[str, str]) -> str:
    """The report's Markdown; `figures` maps a caption to a path relative to the report."""
    perceptual = results.get("perceptual", {})
    sections = [
        f"# Study report: {results.get('name', 'unnamed')}",
        "## What each protection hides",
        security_table(results),
    ]
    sections += _notes(results)
    sections += ["## Plaintext features (the reference)", headline_table(results)]
    if perceptual and not perceptual.get("threat_model_allowed", True):
        sections.append(
            f"**Upper bound:** the GAN used the `{perceptual['name']}` perceptual network, "
            "gradients through the victim itself, which the paper's black-box threat model does not allow."
        )
    sections += _protection_sections("Plaintext, in detail", results["reference"])
    for mode, cells in results["protections"].items():
        sections += _protection_sections(f"Protection: {mode}", cells)
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
    - `attributes` {attribute name: {balanced_accuracy, majority, chance}, ..., "mean": {...}}
      and `reconstruction` {autoencoder, gan: each {cosine_distance, rank1, mAP, psnr, ssim}}:
      the attacks on plaintext features;
    - `reference` and `protections` {protection: ...}: the security table's rows (plaintext,
      then each protection), each {attack: cell} with cells as `invfeat.study.security` makes
      them ({tests, leaks, level, ...}), and per protection `legitimate` {rank1, mAP, bit_exact};
    - `config` and `timings` {stage: seconds}; optionally `perceptual` {name,
      threat_model_allowed} and `chance` {rank1}: the expected rank-1 of a random ranking of
      the same query and gallery.
    """
    check_results(results)
    run_dir = Path(run_dir)
    figures: dict[str, str] = {}
    security_chart(results, run_dir / "security.png")
    figures["Protections against attacks"] = "security.png"
    strongest = {
        f"{mode}, {cells['reconstruction']['reading']}": cells["attributes"]["readings"][
            cells["reconstruction"]["reading"]
        ]
        for mode, cells in results["protections"].items()
        if "reconstruction" in cells
    }
    attribute_chart(results["attributes"], strongest, run_dir / "attributes.png")
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
