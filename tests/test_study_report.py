"""A study's report (invfeat/study/report.py): complete files from a results dict, clear errors for
incomplete ones, and what the Markdown says beside each figure."""

import json

import cv2
import numpy as np
import pytest

from invfeat.study import report


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


def _results() -> dict:
    return {
        "name": "unit",
        "victim": {"rank1": 0.9, "mAP": 0.7},
        "attributes": _attributes(0.8),
        "reconstruction": _reconstruction(0.6),
        "encrypted": {
            "attributes": {"bits": _attributes(0.5), "popcount": _attributes(0.55)},
            "reconstruction": _reconstruction(0.01),
            "reconstruction_encoding": "bits",
        },
        "legitimate": {"rank1": 0.9, "mAP": 0.7},
        "config": {"seed": 0, "image_size": [64, 32]},
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
    assert "80.0 %" in text and "1.0 %" in text  # plaintext vs ciphertext figures both shown
    assert json.loads((tmp_path / "run" / "report.json").read_text())["victim"]["rank1"] == 0.9
    for png in ("attributes.png", "reconstructions.png", "curves.png"):
        image = cv2.imread(str(tmp_path / "run" / png))
        assert image is not None and image.size > 0, png
        assert f"]({png})" in text
    height = cv2.imread(str(tmp_path / "run" / "reconstructions.png")).shape[0]
    assert height == 2 * 16


def test_missing_blocks_are_named(tmp_path):
    results = _results()
    del results["encrypted"], results["legitimate"]
    with pytest.raises(ValueError, match="encrypted, legitimate"):
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
    assert report.read_curves(log) == {"loss": ([5.0, 6.0], [1.5, 1.0])}


def test_image_grid_rejects_mixed_shapes(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        report.image_grid(
            {"a": np.zeros((1, 4, 4, 3)), "b": np.zeros((1, 8, 4, 3))}, tmp_path / "g.png"
        )


def test_figures_selected_on_the_victims_are_called_optimistic():
    chosen = _results() | {"config": {"attributes": {"keep_best": True}}}
    assert "**Optimistic:**" in report.render_markdown(chosen, {})
    last = _results() | {"config": {"attributes": {"keep_best": False}}}
    assert "Optimistic" not in report.render_markdown(last, {})


def test_chance_rank1_is_printed_beside_the_headline():
    text = report.render_markdown(_results() | {"chance": {"rank1": 0.000888}}, {})
    headline = text.split("## Attribute")[0]
    assert "Chance rank-1 of a reconstruction: 0.089 %" in headline
    assert "Chance rank-1" not in report.render_markdown(_results(), {})


def test_each_ciphertext_reading_is_reported_the_strongest_first():
    text = report.render_markdown(_results(), {})
    headline = text.split("## Attribute")[0]
    assert "| 55.0 % popcount, 50.0 % bits |" in headline
    assert "`popcount`, its count of one-bits" in headline and "`bits`, its 32 bits" in headline
    table = text.split("## Attribute recognition")[1].split("##")[0]
    assert "| attribute | balanced accuracy | ciphertext, bits | ciphertext, popcount |" in table
    assert "| gender | 0.800 | 0.500 | 0.550 | 0.500 | 0.500 |" in table
    assert "## Reconstruction, one-time-key ciphertext (read as bits)" in text
