"""A study over several seeds: each seed's run is the study with every seed field set to it (the
victim's training and each attack's; the data stays the same), and one report gives every figure
with its mean and spread over the seeds, and every verdict with how many seeds reached it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from invfeat.files import write_atomic, write_json
from invfeat.study.config import StudyConfig
from invfeat.study.figures import ATTACKS

SEEDED = ("victim", "attributes", "surrogate", "autoencoder", "gan")  # configs with a `seed`


def with_seed(config: StudyConfig, seed: int) -> StudyConfig:
    """The study with every seed field it has set to `seed`."""
    if seed < 0:
        raise ValueError(f"seeds are non-negative integers, got {seed}")
    fields = {
        name: {"seed": seed}
        for name in SEEDED
        if "seed" in {f.name for f in dataclasses.fields(getattr(config, name))}
    }
    return config.replace_nested(**fields)


def _rows(results: Mapping[str, Any]) -> dict[str, float]:
    """The figures of one report by name: the victim's, the plaintext attacks', and the value of
    every test but the per-attribute ones (their means stand for them)."""
    rows = {f"victim {k}": results["victim"][k] for k in ("rank1", "mAP")}
    cells = {"plaintext": results["reference"], **results["protections"]}
    for protection, attacks in cells.items():
        for attack, _ in ATTACKS:
            for test in attacks.get(attack, {}).get("tests", ()):
                figure = test["figure"]
                if attack == "attributes" and not figure.endswith(": mean"):
                    continue
                rows[f"{protection} / {attack} / {figure}"] = test["value"]
    return rows


def _verdicts(results: Mapping[str, Any]) -> dict[str, bool | None]:
    cells = {"plaintext": results["reference"], **results["protections"]}
    return {
        f"{protection} / {attack}": attacks[attack]["leaks"] if attack in attacks else None
        for protection, attacks in cells.items()
        for attack, _ in ATTACKS
    }


def aggregate(reports: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """{seeds, figures: {name: {mean, sd, min, max, values}}, verdicts: {cell: {leaks, of}}}
    over the seeds' report.json contents; a figure missing from any seed is left out."""
    if not reports:
        raise ValueError("aggregate needs at least one seed's report")
    seeds = sorted(reports)
    rows = [_rows(reports[s]) for s in seeds]
    names = [name for name in rows[0] if all(name in r for r in rows)]
    figures = {}
    for name in names:
        values = np.array([r[name] for r in rows], np.float64)
        figures[name] = {
            "mean": float(values.mean()),
            "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()),
            "max": float(values.max()),
            "values": values.tolist(),
        }
    verdicts: dict[str, dict[str, int]] = {}
    for report in (reports[s] for s in seeds):
        for cell, leaks in _verdicts(report).items():
            if leaks is not None:
                counts = verdicts.setdefault(cell, {"leaks": 0, "of": 0})
                counts["leaks"] += int(leaks)
                counts["of"] += 1
    return {"seeds": seeds, "figures": figures, "verdicts": verdicts}


def _value(name: str, value: float) -> str:
    return f"{value:.3f}" if "D_sys" in name or "cosine" in name else f"{100 * value:.1f} %"


def render_markdown(name: str, summary: Mapping[str, Any], runs: Mapping[int, Path]) -> str:
    seeds = summary["seeds"]
    lines = [
        f"# Study report: {name}, seeds {', '.join(map(str, seeds))}",
        "",
        "## Verdicts: in how many seeds each cell leaks",
        "",
        "| protection | " + " | ".join(h for _, h in ATTACKS) + " |",
        "| --- |" + " --- |" * len(ATTACKS),
    ]
    protections = dict.fromkeys(cell.split(" / ")[0] for cell in summary["verdicts"])
    for protection in protections:
        cells = []
        for attack, _ in ATTACKS:
            v = summary["verdicts"].get(f"{protection} / {attack}")
            cells.append("-" if v is None else f"{v['leaks']} of {v['of']}")
        lines.append(f"| {protection} | {' | '.join(cells)} |")
    lines += [
        "",
        "## Figures: mean, standard deviation and range over the seeds",
        "",
        "| figure | mean | sd | min | max | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "| --- |" + " ---: |" * (4 + len(seeds)),
    ]
    for figure, f in summary["figures"].items():
        cells = [_value(figure, f[k]) for k in ("mean", "sd", "min", "max")]
        cells += [_value(figure, v) for v in f["values"]]
        lines.append(f"| {figure} | {' | '.join(cells)} |")
    lines += ["", "Each seed's own report: " + ", ".join(f"{runs[s]}" for s in seeds), ""]
    return "\n".join(lines)


def write_summary(name: str, runs: Mapping[int, Path], out_dir: Path) -> Path:
    """Aggregate the finished runs {seed: run folder} into out_dir/report.json and report.md."""
    reports = {}
    for seed, run in runs.items():
        path = Path(run) / "report.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: seed {seed}'s study has not finished")
        reports[seed] = json.loads(path.read_text())
    summary = aggregate(reports)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        summary | {"runs": {str(s): str(p) for s, p in runs.items()}}, out_dir / "report.json"
    )
    report = out_dir / "report.md"
    text = render_markdown(name, summary, runs)
    write_atomic(report, lambda f: f.write(text.encode()))
    return report
