"""The study's report: `report.json`, `report.md` and its figures, written from a results dict.

The report reads results, never attack code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from invfeat.files import json_default, write_atomic, write_json
from invfeat.study.figures import (
    ATTACKS,
    attribute_chart,
    attribute_rows,
    format_figure,
    image_grid,
    security_chart,
    security_rows,
    strongest_test,
    training_curves,
)

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


def check_results(results: Mapping[str, Any]) -> None:
    """Raises ValueError naming every missing top-level block of a results dict."""
    missing = [key for key in REQUIRED_KEYS if key not in results]
    if missing:
        raise ValueError(f"results lack the block(s) {', '.join(missing)}")


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _cell_text(cell: Mapping[str, Any] | None) -> str:
    if cell is None:
        return "-"
    t = strongest_test(cell)
    leaking = sum(test["leaks"] for test in cell["tests"])
    verdict = f"**leaks** ({leaking} of {len(cell['tests'])} tests)" if leaking else "at chance"
    interval = (
        f" [{format_figure(t['low'], t['figure'])}, {format_figure(t['high'], t['figure'])}]"
        if t["low"] != t["high"]
        else ""
    )
    return (
        f"{verdict}: {t['figure']} {format_figure(t['value'], t['figure'])}{interval} "
        f"(chance {format_figure(t['chance'], t['figure'])})"
    )


def security_table(results: Mapping[str, Any]) -> str:
    """Protections (plaintext first) against attacks: each cell's verdict and strongest test."""
    lines = [
        "| protection | " + " | ".join(h for _, h in ATTACKS) + " | legitimate re-ID rank-1 |",
        "| --- |" + " --- |" * (len(ATTACKS) + 1),
    ]
    for name, cells in security_rows(results):
        legit = cells.get("legitimate")
        legit_text = (
            f"{_pct(legit['rank1'])} (decrypted bit-exact)"
            if legit
            else f"{_pct(results['victim']['rank1'])}"
        )
        row = " | ".join(_cell_text(cells.get(key)) for key, _ in ATTACKS)
        lines.append(f"| {name} | {row} | {legit_text} |")
    return "\n".join(lines)


def _method(method: str, values: Mapping[str, Any]) -> str:
    """A reconstruction's row name: the optimisation says where its descent started."""
    return "optimisation, refining the GAN's" if values.get("init") == "given" else method


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
        name = _method(method, p)
        lines.append(
            f"| {name}: rank-1 / mAP of reconstructions | {_pct(p['rank1'])} / {_pct(p['mAP'])} |"
        )
        lines.append(
            f"| {name}: cosine distance to the victim feature | {p['cosine_distance']:.3f} |"
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
        lines.append(f"| {_method(method, values)} | {cells} |")
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
            f" [{format_figure(t['low'], f)}, {format_figure(t['high'], f)}]"
            if t["low"] != t["high"]
            else ""
        )
        lines.append(
            f"| {f} | {format_figure(t['value'], f)}{bounds} | {format_figure(t['chance'], f)} "
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
        "A cell **leaks** when one of its tests puts a figure above chance: a rank-1 or a "
        "cosine whose interval lies wholly above it; an attribute's balanced accuracy or a "
        "D_sys above the bar that label shuffles set (their mean plus z standard deviations, "
        "given as its chance). A protection's tests share a 1 % chance of a false alarm "
        "(Bonferroni over its attacks and their tests; each table gives its level)."
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
