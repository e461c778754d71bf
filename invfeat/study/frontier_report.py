"""The frontier's report: report.json (every point: what it is, its utility, its leakage and
the cells behind them), report.md (the table and the figure) and frontier.png (utility against
each leakage measure, one curve per defence). It reads results, never attack code."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from invfeat.files import json_default, write_atomic, write_json
from invfeat.study.figures import image_grid

FIGURE = "frontier.png"
GRID = "reconstructions.png"
REQUIRED_KEYS = ("name", "chance", "points", "config", "timings")
POINT_KEYS = ("point", "kind", "defence", "strength", "utility", "leakage", "cells")
# (leakage key, the figure's axis label, the table's heading)
MEASURES = (
    (
        "attributes",
        "attribute head: balanced accuracy - chance (pp)",
        "attributes: lead over chance",
    ),
    ("reconstruction", "best reconstruction: rank-1 (%)", "reconstruction: best rank-1"),
    ("linkability", "attacker's linkability: rank-1 (%)", "linkability: attacker's rank-1"),
)
MARKERS = {"static": "s", "one-time": "D", "stream": "^"}


def check_results(results: Mapping[str, Any]) -> None:
    """Raises ValueError naming what a frontier's results dict lacks."""
    missing = [key for key in REQUIRED_KEYS if key not in results]
    missing += [
        f"points[{i}].{key}"
        for i, point in enumerate(results.get("points", []))
        for key in POINT_KEYS
        if key not in point
    ]
    if missing:
        raise ValueError(f"frontier results lack {', '.join(missing)}")


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def leakage_value(point: Mapping[str, Any], measure: str) -> float:
    """The point's headline figure for `measure` (NaN where it was not measured)."""
    block = point["leakage"].get(measure)
    if block is None:
        return float("nan")
    return block["lead"] if measure == "attributes" else block["rank1"]


def _cell(point: Mapping[str, Any], measure: str) -> str:
    block = point["leakage"].get(measure)
    if block is None:
        return "-"
    if measure == "attributes":
        text = f"{100 * block['lead']:+.1f} pp ({_pct(block['balanced_accuracy'])})"
    elif measure == "reconstruction":
        text = f"{_pct(block['rank1'])} ({block['attack']})"
    else:
        text = f"{_pct(block['rank1'])}"
    reading = block.get("reading") if point["kind"] == "encryption" else None
    if measure == "linkability" and point["defence"] == "project":
        reading = block["reading"]
    text += f", {reading}" if reading else ""
    return f"**{text}**" if block["leaks"] else text


def _utility(point: Mapping[str, Any]) -> tuple[str, str]:
    utility = point["utility"]
    exact = " (decrypted, bit-exact)" if utility.get("bit_exact") else ""
    return _pct(utility["rank1"]) + exact, _pct(utility["mAP"])


def frontier_table(results: Mapping[str, Any]) -> str:
    """One row per point: utility for the legitimate user, then each leakage measure; bold where
    the study's test calls the cell leaking."""
    chance = results["chance"]["rank1"]
    lines = [
        "| point | strength | re-ID rank-1 (key holder) | mAP | "
        + " | ".join(heading for _, _, heading in MEASURES)
        + " |",
        "| --- | ---: | ---: | ---: |" + " ---: |" * len(MEASURES),
        f"| (chance) | | {_pct(chance)} | | +0.0 pp | {_pct(chance)} | {_pct(chance)} |",
    ]
    for point in results["points"]:
        strength = "" if point["strength"] is None else f"{point['strength']:g}"
        rank1, mAP = _utility(point)
        cells = " | ".join(_cell(point, measure) for measure, _, _ in MEASURES)
        lines.append(f"| {point['defence']} | {strength} | {rank1} | {mAP} | {cells} |")
    return "\n".join(lines)


def frontier_chart(results: Mapping[str, Any], path: Path) -> Path:
    """Utility (the key holder's rank-1) on x against each leakage measure on y, one panel per
    measure: a curve per defence through its strengths (each labelled), the plaintext point
    and each encryption mode marked, the level of an attacker without the features dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = results["points"]
    chance = results["chance"]["rank1"]
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(5.2 * len(MEASURES), 4.6))
    curves: dict[str, list[Mapping[str, Any]]] = {}
    for point in points:
        if point["kind"] == "defence":
            curves.setdefault(point["defence"], []).append(point)
    scale = lambda measure: 100.0  # percentage points and percent alike
    for ax, (measure, label, _) in zip(axes, MEASURES, strict=True):
        for name, members in curves.items():
            x = [100 * p["utility"]["rank1"] for p in members]
            y = [scale(measure) * leakage_value(p, measure) for p in members]
            (line,) = ax.plot(x, y, "o-", label=name, markersize=4)
            for p, xi, yi in zip(members, x, y, strict=True):
                ax.annotate(
                    f"{p['strength']:g}", (xi, yi), textcoords="offset points", xytext=(3, 3),
                    fontsize=7, color=line.get_color(),
                )  # fmt: skip
        for p in points:
            if p["kind"] == "defence":
                continue
            marker = "*" if p["kind"] == "plaintext" else MARKERS.get(p["point"], "P")
            ax.plot(
                100 * p["utility"]["rank1"], scale(measure) * leakage_value(p, measure), marker,
                color="black" if p["kind"] == "plaintext" else "grey",
                markersize=13 if p["kind"] == "plaintext" else 8,
                zorder=4 if p["kind"] == "plaintext" else 3,
                alpha=1.0 if p["kind"] == "plaintext" else 0.7,
                label=p["point"] if p["kind"] == "plaintext" else f"{p['point']} (decrypted)",
                linestyle="none",
            )  # fmt: skip
        level = 0.0 if measure == "attributes" else 100 * chance
        ax.axhline(level, color="grey", linestyle="--", linewidth=0.8, label="chance")
        ax.set_xlabel("legitimate re-ID rank-1 (%), key holder")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(
        f"{results['name']}: utility against what an adaptive attacker gets "
        "(projection's linkability: across keys)",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _notes(results: Mapping[str, Any]) -> list[str]:
    config = results["config"]
    kinds = ", ".join(config["reconstructions"])
    optimisation = (
        f" The optimisation inverts the first {config['inverted_queries']} queries through a "
        "surrogate of the defended API trained on the attacker's own (image, output) pairs, "
        "composed with the defence where it needs no secret (quantise, straight-through; drop)."
        if "optimisation" in config["reconstructions"]
        else ""
    )
    left_out = [k for k in ("gan", "optimisation") if k not in config["reconstructions"]]
    gan = (
        f" Left out of this run: {' and '.join(left_out)} (name them in `reconstructions`)."
        if left_out
        else ""
    )
    return [
        "## What each figure is",
        "\n".join(
            [
                "- **re-ID rank-1 / mAP (key holder)**: query against gallery of the attack "
                "domain, by cosine, on what the legitimate user holds: the defended vectors "
                "(noise, quantise, drop), projected vectors under the service's key (project), "
                "the decrypted vectors (static, one-time, stream: bit-exact, so the plaintext's).",
                "- **attributes: lead over chance**: the attribute head trained on the API's "
                "outputs for the attacker's own images (the train split) and scored on the "
                "victims' vectors (query and gallery): mean balanced accuracy minus the mean of "
                "1 / classes, in percentage points (the best reading for an encryption mode).",
                f"- **reconstruction: best rank-1**: the best of {kinds}, each trained on or "
                "inverting the API's outputs, its reconstructions of the victims' queries sent "
                "through the victim's plaintext API and ranked against the real gallery (the "
                "GAN's feature loss through the attacker's surrogate of the plaintext API, as in "
                "the study)." + optimisation + gan,
                "- **linkability: attacker's rank-1**: can the attacker, without a key, match a "
                "victim's query vector to the same person's gallery vectors: rank-1 by cosine, "
                "raw or after a metric learned on its own outputs (the better). For the keyless "
                "defences that is re-ID on the served vectors; for the projection it is the "
                "renewability check, queries under a new key against the gallery under the old "
                "(under one key, cosines survive the projection and the attacker links as well "
                "as the key holder: `linkability_same_key` in report.json); for the encryption "
                "modes it is the study's readings of the ciphertext (estimate, popcount).",
                "- **bold**: the study's significance test calls the cell leaking (intervals "
                "over the victims, Bonferroni across a point's tests; `invfeat.study.security`).",
                "- Noise is drawn afresh per served vector: an attacker who can send one image "
                "many times averages it away (the noise of n queries shrinks as 1 / sqrt(n)); "
                "the attacker here sends each image once. The attacker knows each defence and "
                "its strength, never a key.",
            ]
        ),
    ]


def render_markdown(results: Mapping[str, Any], figures: Mapping[str, str]) -> str:
    """The report's Markdown; `figures` maps a caption to a path relative to the report."""
    sections = [
        f"# Privacy-utility frontier: {results['name']}",
        results.get("description", ""),
        "## Utility against leakage, per point",
        frontier_table(results),
    ]
    sections += [f"## {caption}\n\n![{caption}]({rel})" for caption, rel in figures.items()]
    sections += _notes(results)
    timings = results["timings"]
    sections += [
        "## Timings",
        f"{sum(timings.values()):.0f} s in stages.\n\n| stage | seconds |\n| --- | --- |\n"
        + "\n".join(f"| {stage} | {seconds:.1f} |" for stage, seconds in timings.items()),
        "## Configuration",
        "```json\n" + json.dumps(results["config"], indent=2, default=json_default) + "\n```",
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _best_rows(
    points: Sequence[Mapping[str, Any]], grid_rows: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The real images, then each point's best reconstruction."""
    rows = {k: v for k, v in grid_rows.items() if k == "real"}
    for point in points:
        best = point["leakage"].get("reconstruction", {}).get("attack")
        key = f"{best} ({point['point']})"
        if key in grid_rows:
            rows[key] = grid_rows[key]
    return rows


def write_frontier_report(
    results: Mapping[str, Any],
    run_dir: Path,
    *,
    grid_rows: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Writes report.json, report.md, frontier.png (and reconstructions.png, the best attack's
    reconstructions per point, given `grid_rows`) into `run_dir`; returns report.md's path."""
    check_results(results)
    run_dir = Path(run_dir)
    figures = {"Utility against leakage": FIGURE}
    frontier_chart(results, run_dir / FIGURE)
    rows = _best_rows(results["points"], grid_rows or {})
    if len(rows) > 1:
        image_grid(rows, run_dir / GRID, label_width=190)
        figures["Real queries and each point's best reconstruction"] = GRID
    write_json(results, run_dir / "report.json")
    report = run_dir / "report.md"
    write_atomic(report, lambda f: f.write(render_markdown(results, figures).encode()))
    return report
