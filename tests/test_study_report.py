"""A study's report (invfeat/study/report.py): complete files from a results dict, clear errors for
incomplete ones, the security table's verdicts, and what the Markdown says beside each figure."""

import json

import cv2
import numpy as np
import pytest

from invfeat.study import figures, report


def _attributes(bacc: float) -> dict:
    block = {
        name: {"balanced_accuracy": bacc, "majority": 0.5, "chance": 0.5}
        for name in ("gender", "hat", "backpack")
    }
    block["mean"] = {"balanced_accuracy": bacc, "majority": 0.5, "chance": 0.5}
    return block


def _reconstruction(rank1: float) -> dict:
    values = {"cosine_distance": 0.3, "rank1": rank1, "mAP": rank1 / 2, "psnr": 14.0, "ssim": 0.4}
    return {"autoencoder": dict(values), "gan": dict(values)}


def _test(figure: str, value: float, chance: float, half: float = 0.02) -> dict:
    low, high = value - half, value + half
    return {"figure": figure, "value": value, "low": low, "high": high, "chance": chance,
            "leaks": low > chance}  # fmt: skip


def _cell(*tests: dict, **data) -> dict:
    return data | {"tests": list(tests), "leaks": any(t["leaks"] for t in tests),
                   "level": 1 - 0.05 / len(tests)}  # fmt: skip


def _attribute_cell(**readings: float) -> dict:
    blocks = {name: _attributes(bacc) for name, bacc in readings.items()}
    for block in blocks.values():
        for value in block.values():
            value |= {
                "low": value["balanced_accuracy"] - 0.02,
                "high": value["balanced_accuracy"] + 0.02,
            }
    tests = [_test(f"{name}: mean", bacc, 0.5) for name, bacc in readings.items()]
    return _cell(*tests, readings=blocks)


def _reconstruction_cell(rank1: float, reading: str | None) -> dict:
    attacks = _reconstruction(rank1)
    return _cell(*(_test(f"{k}: rank-1", rank1, 0.001, 0.005) for k in attacks),
                 reading=reading, attacks=attacks)  # fmt: skip


def _protection(bacc: float, rank1: float) -> dict:
    return {
        "attributes": _attribute_cell(estimate=bacc, popcount=0.5),
        "reconstruction": _reconstruction_cell(rank1, "estimate"),
        "linkability": _cell(_test("estimate, raw: rank-1", rank1, 0.001, 0.005)),
        "irreversibility": _cell(_test("cosine to own plaintext minus to another's", rank1, 0.0)),
        "legitimate": {"rank1": 0.9, "mAP": 0.7, "bit_exact": True},
    }


def _results() -> dict:
    return {
        "name": "unit",
        "victim": {"rank1": 0.9, "mAP": 0.7},
        "attributes": _attributes(0.8),
        "reconstruction": _reconstruction(0.6),
        "reference": {
            "attributes": _attribute_cell(floats=0.8),
            "reconstruction": _reconstruction_cell(0.6, None),
            "linkability": _cell(_test("floats, raw: rank-1", 0.7, 0.001)),
        },
        "protections": {"one-time": _protection(0.56, 0.3), "stream": _protection(0.5, 0.0)},
        "config": {"seed": 0, "image_size": [64, 32], "readings": ["estimate", "popcount"]},
        "timings": {"victim": 1.5, "attacks": 2.0},
    }


def test_write_report_writes_every_file(tmp_path):
    grid = {
        "real": np.random.default_rng(0).random((4, 16, 8, 3)),
        "autoencoder": np.zeros((4, 16, 8, 3)),
    }
    log = tmp_path / "victim.jsonl"
    log.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.0, "note": "x"}\n')
    md = report.write_report(_results(), tmp_path / "run", grid_rows=grid, logs={"victim": log})

    text = md.read_text()
    assert "| attributes: mean balanced accuracy" in text
    assert "80.0 %" in text and "56.0 %" in text  # plaintext vs ciphertext figures both shown
    assert json.loads((tmp_path / "run" / "report.json").read_text())["victim"]["rank1"] == 0.9
    for png in ("security.png", "attributes.png", "reconstructions.png", "curves.png"):
        image = cv2.imread(str(tmp_path / "run" / png))
        assert image is not None and image.size > 0, png
        assert f"]({png})" in text
    height = cv2.imread(str(tmp_path / "run" / "reconstructions.png")).shape[0]
    assert height == 2 * 16


def test_missing_blocks_are_named(tmp_path):
    results = _results()
    del results["reference"], results["protections"]
    with pytest.raises(ValueError, match="reference, protections"):
        report.write_report(results, tmp_path)
    assert not (tmp_path / "report.json").exists()


def test_white_box_upper_bound_is_labelled():
    results = _results() | {"perceptual": {"name": "white-box", "threat_model_allowed": False}}
    assert "Upper bound" in report.render_markdown(results, {})
    allowed = _results() | {
        "perceptual": {"name": "victim-surrogate", "threat_model_allowed": True}
    }
    assert "Upper bound" not in report.render_markdown(allowed, {})


def test_read_curves_skips_non_numeric(tmp_path):
    log = tmp_path / "m.jsonl"
    log.write_text('{"step": 5, "loss": 1.5, "stage": "d"}\n\n{"step": 6, "loss": 1.0}\n')
    assert figures.read_curves(log) == {"loss": ([5.0, 6.0], [1.5, 1.0])}


def test_image_grid_rejects_mixed_shapes(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        figures.image_grid(
            {"a": np.zeros((1, 4, 4, 3)), "b": np.zeros((1, 8, 4, 3))}, tmp_path / "g.png"
        )


def test_figures_selected_on_the_victims_are_called_optimistic():
    chosen = _results() | {"config": {"attributes": {"keep_best": True}}}
    assert "**Optimistic:**" in report.render_markdown(chosen, {})
    last = _results() | {"config": {"attributes": {"keep_best": False}}}
    assert "Optimistic" not in report.render_markdown(last, {})


def test_chance_rank1_is_printed_beside_the_headline():
    text = report.render_markdown(_results() | {"chance": {"rank1": 0.000888}}, {})
    headline = text.split("## Plaintext features")[0]
    assert "Chance rank-1: 0.089 %" in headline
    assert "Chance rank-1" not in report.render_markdown(_results(), {})


def test_the_security_table_marks_each_cell_with_its_verdict_and_interval():
    text = report.render_markdown(_results(), {})
    table = text.split("## What each protection hides")[1].split("\n\n")[1]
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert list(rows) == ["plaintext", "one-time", "stream"]
    # one-time leaks attributes (56 % [54, 58] above 50 %) and through every other attack
    assert (
        "**leaks** (1 of 2 tests): estimate: mean 56.0 % [54.0 %, 58.0 %] (chance 50.0 %)"
        in rows["one-time"]
    )
    assert rows["one-time"].count("**leaks**") == 4
    # stream: every cell at chance, key recovery not applicable, decryption exact
    assert "**leaks**" not in rows["stream"] and rows["stream"].count("at chance") == 4
    assert "| - | 90.0 % (decrypted bit-exact) |" in rows["stream"]
    assert "`popcount`, its count of one-bits" in text and "`estimate`, the attacker's" in text


def test_each_protection_has_its_attribute_table_and_tests():
    text = report.render_markdown(_results(), {})
    section = text.split("## Protection: one-time")[1].split("## Protection: stream")[0]
    assert "| attribute | estimate | popcount | majority | chance |" in section
    assert "| gender | 0.560 [0.540, 0.580] | 0.500 [0.480, 0.520] | 0.500 | 0.500 |" in section
    assert "### Reconstruction (read as estimate)" in section
    assert "| estimate, raw: rank-1 | 30.0 % [29.5 %, 30.5 %] | 0.1 % | **yes** |" in section
