"""The privacy-utility frontier (invfeat/study/frontier*.py, `python -m experiments frontier`):
the `tiny` frontier end to end writes a complete report whose points are what they claim (a
strength-0 defence is the plaintext, sign bits are sign bits, a static key's holder gets the
plaintext back); a killed run resumes at its first unfinished stage; bad configurations are
refused with a message naming the field."""

import dataclasses
import json

import numpy as np
import pytest

from experiments.__main__ import build_parser, main
from experiments.configs.frontiers import get_frontier
from invfeat.study import frontier_report
from invfeat.study.frontier import FrontierConfig
from invfeat.study.frontier_points import SERVED_FILE
from invfeat.victims.from_files import FileVictim

TINY = get_frontier("tiny")
POINTS = [
    "plaintext",
    "static",
    "noise-0.0",
    "noise-2.0",
    "quantise-4",
    "quantise-1",
    "project-1.0",
]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("frontier")
    argv = ["frontier", "--config", "tiny", "--runs-dir", str(root / "runs"),
            "--data-dir", str(root / "data")]  # fmt: skip
    assert main(argv) == 0
    run = root / "runs" / TINY.name
    return run, argv, json.loads((run / "report.json").read_text())


def _point(results, label):
    return next(p for p in results["points"] if p["point"] == label)


def _served(run, label):
    with np.load(run / "defences" / label / "served" / SERVED_FILE) as saved:
        return {name: saved[name] for name in saved.files}


def test_the_tiny_frontier_writes_a_complete_report(tiny_run):
    run, _, results = tiny_run
    frontier_report.check_results(results)
    assert [p["point"] for p in results["points"]] == POINTS
    for point in results["points"]:
        assert 0 <= point["utility"]["rank1"] <= 1 and 0 < point["utility"]["mAP"] <= 1
        leakage = point["leakage"]
        assert set(leakage) == {"attributes", "reconstruction", "linkability"}
        assert -1 < leakage["attributes"]["lead"] < 1
        assert set(leakage["reconstruction"]["rank1_per_attack"]) == {"optimisation"}
        assert leakage["reconstruction"]["rank1"] == max(
            leakage["reconstruction"]["rank1_per_attack"].values()
        )
        for measure in ("attributes", "reconstruction", "linkability"):
            assert leakage[measure]["leaks"] == point["cells"][measure]["leaks"]
    assert _point(results, "quantise-1")["strength"] == 1
    assert _point(results, "noise-2.0")["strength"] == 2.0
    # the projection's attacker links across keys (renewability); under one key it is re-ID
    project = _point(results, "project-1.0")
    assert project["leakage"]["linkability"]["reading"] == "new key"
    assert "linkability_same_key" in project["cells"]
    assert (run / "frontier.png").read_bytes()[:8] == PNG
    assert (run / "reconstructions.png").read_bytes()[:8] == PNG
    text = (run / "report.md").read_text()
    assert "| point | strength | re-ID rank-1 (key holder) |" in text
    assert "![Utility against leakage](frontier.png)" in text
    assert "Left out of this run: gan (name them in `reconstructions`)" in text
    assert json.loads((run / "config.json").read_text()) == TINY.to_dict()


def test_a_strength_0_defence_is_the_plaintext_and_is_read_back(tiny_run):
    run, _, results = tiny_run
    plain, zero = _point(results, "plaintext"), _point(results, "noise-0.0")
    assert zero["utility"] == plain["utility"]
    assert zero["leakage"]["attributes"] == plain["leakage"]["attributes"] | {"reading": "defended"}
    record = json.loads((run / "defences/noise-0.0/optimisation/result.json").read_text())
    assert record["same_as"] == "optimisation_plain"
    record = json.loads((run / "defences/noise-0.0/attributes/timing.json").read_text())
    assert record["same_as"] == "attributes_plain"


def test_the_served_vectors_are_the_defence_of_the_plaintext(tiny_run):
    run, _, _ = tiny_run
    with np.load(run / "features" / "plain_query.npz") as f:
        plain = f["accumulated_feature_array"]
    signs = _served(run, "quantise-1")["query"]
    np.testing.assert_array_equal(signs, np.where(plain >= 0, 1.0, -1.0))
    noisy = _served(run, "noise-2.0")["query"]
    cosine = (
        np.sum(noisy * plain, 1) / np.linalg.norm(noisy, axis=1) / np.linalg.norm(plain, axis=1)
    )
    assert abs(cosine.mean() - 1 / np.sqrt(5)) < 0.1  # noise of 2x the RMS: cosine 1 / sqrt(1 + 4)
    projected = _served(run, "project-1.0")
    assert projected["query"].shape == plain.shape
    # under a new key the same images give other vectors of the same norms
    assert not np.allclose(projected["query"], projected["query_new_key"], atol=1e-3)
    np.testing.assert_allclose(
        np.linalg.norm(projected["query"], axis=1),
        np.linalg.norm(projected["query_new_key"], axis=1),
        rtol=1e-4,
    )


def test_the_key_holder_of_a_static_key_gets_the_plaintext_back(tiny_run):
    _, _, results = tiny_run
    static, plain = _point(results, "static"), _point(results, "plaintext")
    assert static["utility"]["bit_exact"] is True
    assert static["utility"]["rank1"] == plain["utility"]["rank1"]
    assert static["utility"]["mAP"] == plain["utility"]["mAP"]
    # its estimate decodes the plaintext bit for bit: the attacker's head is the plaintext's
    assert static["leakage"]["attributes"]["lead"] == plain["leakage"]["attributes"]["lead"]


def test_a_killed_frontier_resumes_at_its_first_unfinished_stage(tiny_run, capsys):
    run, argv, before = tiny_run
    (run / "defences/quantise-1/linkability/result.json").unlink()  # as if killed there
    (run / "report.json").unlink()
    served = _served(run, "noise-2.0")
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "[victim] done earlier" in err and "[defences/noise-2.0/served] done earlier" in err
    assert "[defences/quantise-1/linkability] finished" in err
    assert err.count("running") == 1
    after = json.loads((run / "report.json").read_text())
    assert after["points"] == before["points"]
    np.testing.assert_array_equal(_served(run, "noise-2.0")["train"], served["train"])


def test_another_config_in_the_same_run_dir_is_refused(tiny_run, capsys):
    run, argv, _ = tiny_run
    capsys.readouterr()
    assert main([*argv, "--set", "inverted_queries=4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "another configuration" in err
    assert "inverted_queries" in err


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"defences": {"noise": (-1.0,)}}, "defences.noise: noise strength"),
        ({"defences": {"quantise": (3.5,)}}, "defences.quantise: quantise strength (bits)"),
        ({"defences": {"blur": (1.0,)}}, "unknown defence 'blur'"),
        ({"defences": {"drop": ()}}, "defences.drop names no strength"),
        ({"defences": {"drop": (0.5, 0.5)}}, "defences.drop repeats a strength"),
        ({"defences": [("noise", 1.0)]}, "defences must map a defence name"),
        ({"defences": {}, "protections": ()}, "nothing to put on a frontier"),
        ({"reconstructions": ("decoder",)}, "reconstructions must name one or more"),
        ({"reconstructions": ()}, "reconstructions must name one or more"),
        ({"protections": ("rot13",)}, "protections must name some"),
        ({"inverted_queries": 0}, "inverted_queries must be an int >= 1"),
        ({"defence_seed": -1}, "defence_seed must be an int >= 0"),
        ({"readings": ()}, "readings must name at least one"),
        ({"victim": FileVictim(name="files")}, "a defence runs inside the victim's serving"),
        ({"name": "a/b"}, "must be a folder name"),
    ],
)
def test_bad_configs_are_refused_by_name(changes, message):
    with pytest.raises(ValueError) as raised:
        dataclasses.replace(TINY, **changes)
    assert message in str(raised.value)


def test_encodings_are_the_points_own():
    attributes = dataclasses.replace(TINY.attributes, encoding="popcount")
    with pytest.raises(ValueError, match="attributes.encoding must be null"):
        dataclasses.replace(TINY, attributes=attributes)
    optimisation = dataclasses.replace(TINY.optimisation, init="given")
    with pytest.raises(ValueError, match='optimisation.init must be "grey"'):
        dataclasses.replace(TINY, optimisation=optimisation)


def test_the_config_is_normalised_and_json_able():
    config = dataclasses.replace(TINY, defences={"quantise": [8.0, 1]}, protections=["stream"])
    assert config.defences == {"quantise": (8, 1)} and config.protections == ("stream",)
    assert [d.label for d in config.points()] == ["quantise-8", "quantise-1"]
    assert json.loads(json.dumps(config.to_dict()))["defences"] == {"quantise": [8, 1]}
    assert FrontierConfig(name="x", description="", victim=TINY.victim).points()[0].label == (
        "noise-0.25"
    )


def test_a_bad_set_is_one_error_line(tmp_path, capsys):
    argv = ["frontier", "--config", "tiny", "--runs-dir", str(tmp_path), "--set",
            "defences={\"noise\": [-1]}"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --set defences=") and "noise strength" in err
    assert err.count("\n") == 1 and not any(tmp_path.iterdir())


def test_the_command_is_listed():
    text = build_parser().format_help()
    assert "frontier" in text and "privacy-utility frontier" in text
